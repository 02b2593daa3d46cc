"""The compiled decode step (rollout.generate's default) samples the same tokens with the same
log-probs as the reference loop (generate(compiled=False)), greedy and sampled, for the embedded
hallucue-tiny and a tiny random Qwen2-VL and SmolVLM (Idefics3): left-padded prompts of different
lengths, with and without an image, rows that stop early and rows cut at max_tokens."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.data.synth import load_synth  # noqa: E402
from hallucue_mlx.forward import encode_prompt  # noqa: E402
from hallucue_mlx.models import load_model  # noqa: E402
from hallucue_mlx.rollout import DONE_CHECK, KEY_CHUNK, generate  # noqa: E402

MODELS = ["hallucue-tiny", "qwen2_vl", "idefics3"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, build_tiny):
    root = tmp_path_factory.mktemp("decode")
    # one item whose answer is short (no addition) and one that asks for additions, which the
    # trained model sometimes writes out when it samples: its rows end at different lengths,
    # some well within the test's token budget
    pool = load_synth("train", n=40, seed=0)
    short = next(it for it in pool if "addends" not in it.meta["facts"])
    chained = next(it for it in pool if len(it.meta["facts"].get("addends") or []) >= 2)
    items = [short, chained]
    out = {}
    for name in MODELS:
        path = name if name == "hallucue-tiny" else build_tiny(root / name, family=name)
        model, proc = load_model(path, dtype="float32")
        prompts = [
            encode_prompt(proc, model, items[0], template="short"),
            encode_prompt(proc, model, "What is 2 plus 3?", None),
            encode_prompt(proc, model, items[1], template="easyr1"),
        ]
        assert len({p.length for p in prompts}) == 3  # left padding in the batch
        out[name] = (model, proc, prompts)
    return out


def _assert_same(ref, new):
    for g_ref, g_new in zip(ref, new, strict=True):
        for a, b in zip(g_ref, g_new, strict=True):
            assert b.ids == a.ids
            assert (b.text, b.truncated) == (a.text, a.truncated)
            np.testing.assert_allclose(b.logprobs, a.logprobs, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("name", MODELS)
def test_compiled_decode_equals_the_reference_loop(loaded, name, temperature):
    model, proc, prompts = loaded[name]
    # the trained model stops on its own (rows of different lengths; sampled, the whole batch
    # is done before max_tokens; greedy, the image-less prompt runs on and is cut); the random
    # ones run to max_tokens
    max_tokens = 3 * DONE_CHECK + 5 if name == "hallucue-tiny" else 12
    args = dict(n=2, temperature=temperature, max_tokens=max_tokens, key=mx.random.key(11))
    ref = generate(model, proc, prompts, compiled=False, **args)
    new = generate(model, proc, prompts, compiled=True, **args)
    _assert_same(ref, new)
    if name == "hallucue-tiny":
        lengths = {len(c.ids) for g in ref for c in g}
        assert len(lengths) > 1 and min(lengths) < max_tokens
        if temperature > 0:
            assert not any(c.truncated for g in ref for c in g)
    single = generate(model, proc, prompts[:1], compiled=False, **args)
    _assert_same(single, generate(model, proc, prompts[:1], compiled=True, **args))


@pytest.mark.slow
def test_compiled_decode_equals_the_reference_with_top_p_and_a_share_of_rows(loaded):
    """top-p sampling, and a process's share of a data-parallel batch (rows=(first, total))."""
    model, proc, prompts = loaded["hallucue-tiny"]
    args = dict(n=3, temperature=1.0, max_tokens=16, key=mx.random.key(4), top_p=0.9)
    for rows in (None, (3, 15)):
        ref = generate(model, proc, prompts, rows=rows, compiled=False, **args)
        _assert_same(ref, generate(model, proc, prompts, rows=rows, compiled=True, **args))


def test_a_decode_drops_its_finished_rows_and_samples_the_same_tokens(loaded, monkeypatch):
    """Rows that stopped leave the batch at the next all-done read (rollout.COMPACT_MIN_ROWS
    and up, powers of two): the compiled step is traced at the smaller sizes, and every row
    samples what it samples in the whole batch (its own Gumbel noise), so the tokens equal the
    uncompacted decode's and the reference loop's, sampled and within a share of a batch."""
    import hallucue_mlx.rollout as rollout

    model, proc, prompts = loaded["hallucue-tiny"]
    sizes: list[int] = []
    step = rollout._decode_step

    def spy(*a, **k):
        inner = step(*a, **k)

        def traced(fixed, y, *rest):
            sizes.append(y.shape[0])  # runs when mx.compile traces: once per new shape
            return inner(fixed, y, *rest)

        return traced

    monkeypatch.setattr(rollout, "_decode_step", spy)
    # the rows end at different lengths, some well before others: the batch shrinks mid-decode
    args = dict(n=8, temperature=1.0, max_tokens=5 * DONE_CHECK, key=mx.random.key(7))
    for rows in (None, (8, 40)):
        ref = generate(model, proc, prompts, rows=rows, compiled=False, **args)
        sizes.clear()
        whole = generate(model, proc, prompts, rows=rows, compact=False, **args)
        assert set(sizes) == {24}
        sizes.clear()
        compacted = generate(model, proc, prompts, rows=rows, **args)
        assert sizes[0] == 24 and min(sizes) < 24, sizes
        _assert_same(ref, whole)
        _assert_same(ref, compacted)
    lengths = sorted(len(c.ids) for g in ref for c in g)
    assert lengths[0] < 2 * DONE_CHECK < 3 * DONE_CHECK < lengths[-1], lengths


@pytest.mark.parametrize("name", ["qwen2_vl", "idefics3"])
def test_compiled_decode_equals_the_reference_past_one_key_chunk(loaded, name):
    """Longer than KEY_CHUNK tokens: the step is traced again for each wider view of the cache."""
    model, proc, prompts = loaded[name]
    args = dict(n=1, temperature=1.0, max_tokens=KEY_CHUNK + 9, key=mx.random.key(2))
    ref = generate(model, proc, prompts[:2], compiled=False, **args)
    assert any(len(c.ids) > KEY_CHUNK + 1 for g in ref for c in g)
    _assert_same(ref, generate(model, proc, prompts[:2], compiled=True, **args))


def test_compiled_decode_reads_fresh_weights_on_every_call(loaded):
    """The compiled step is traced per call: weights changed between calls are the ones used."""
    model, proc, prompts = loaded["qwen2_vl"]
    head = model.language_model.model.embed_tokens
    weight = head.weight
    args = dict(n=2, temperature=1.0, max_tokens=6, key=mx.random.key(0))
    before = generate(model, proc, prompts[:1], **args)
    try:
        head.weight = weight * 3.0
        changed = generate(model, proc, prompts[:1], **args)
        _assert_same(generate(model, proc, prompts[:1], compiled=False, **args), changed)
    finally:
        head.weight = weight
    assert [c.logprobs for c in changed[0]] != [c.logprobs for c in before[0]]


def _kernel_cache() -> Path | None:
    """Where MLX's CPU backend keeps the kernels mx.compile builds (None on other backends)."""
    if mx.default_device() != mx.cpu:
        return None
    path = Path(tempfile.gettempdir()) / "mlx" / mx.__version__ / "cpu"
    return path if path.is_dir() else None


@pytest.mark.slow
def test_a_new_prompt_length_builds_no_new_kernels(loaded):
    """The prompt length reaches the compiled step as an array, not as a constant of its graph:
    a constant is compiled into the fused kernels, and each new length built them anew (about
    0.7 s each on the CPU backend, paid by every short run and evaluation)."""
    model, proc, _ = loaded["hallucue-tiny"]
    items = load_synth("train", n=12, seed=3)
    by_length = {}
    for it in items:
        p = encode_prompt(proc, model, it, template="short")
        by_length.setdefault(p.length, p)
    assert len(by_length) >= 3
    lengths = sorted(by_length)
    args = dict(n=2, temperature=1.0, max_tokens=10, key=mx.random.key(5))
    generate(model, proc, [by_length[lengths[0]]], **args)  # builds what it needs
    cache = _kernel_cache()
    if cache is None:
        pytest.skip("no CPU kernel cache on this backend")
    before = set(os.listdir(cache))
    for length in lengths[1:]:
        generate(model, proc, [by_length[length]], **args)
    assert set(os.listdir(cache)) == before
