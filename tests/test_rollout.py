"""Rollout engine: log-probs equal a fresh loss forward under every corruption, stale M-RoPE state
cannot leak, sampling is seeded, banned tokens never appear, EOS/truncation, batched = single."""

from __future__ import annotations

import os

import mlx.core as mx
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.forward import banned_token_ids, completion_logprobs, encode_prompt, logit_bias  # noqa: E402
from hallucue_mlx.grpo import make_batch  # noqa: E402
from hallucue_mlx.rollout import eos_token_ids, generate  # noqa: E402

TEMPLATE = "short"


def _group(model, proc, prompt, *args):
    """The completions of one prompt (n, temperature, max_tokens, key as generate takes them)."""
    return generate(model, proc, [prompt], *args)[0]


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    import mlx_vlm

    return mlx_vlm.load(str(tiny_dir))


@pytest.fixture(scope="module")
def items():
    from hallucue_mlx.data.synth import load_synth

    return load_synth("train", n=6, seed=0)


def _recompute_diff(model, proc, prompts, temperature=0.7, n=3, max_tokens=12, seed=0):
    groups = generate(
        model,
        proc,
        prompts,
        n=n,
        temperature=temperature,
        max_tokens=max_tokens,
        key=mx.random.key(seed),
    )
    comps = [c for g in groups for c in g]
    batch = make_batch(
        prompts, [c.ids for c in comps], [c.logprobs for c in comps], np.zeros(len(comps))
    )
    lp, _ = completion_logprobs(
        model, prompts, batch.completion_ids, logit_bias(model, proc), temperature
    )
    mask = np.array(batch.mask)
    diff = np.abs(np.array(lp) - np.array(batch.old_logps)) * mask
    return diff.sum() / mask.sum(), groups


@pytest.mark.parametrize("corruption", ["none", "blank", "random", "text_removal"])
def test_loss_forward_logprobs_equal_rollout_logprobs(loaded, items, corruption):
    model, proc = loaded
    pool = items
    if corruption != "none":
        from hallucue_mlx.corrupt import Corruption, apply

        pool = [it for it, _ in apply(items, Corruption(corruption, 1.0, seed=0))]
    prompts = [encode_prompt(proc, model, it, template=TEMPLATE) for it in pool[:3]]
    mean_diff, groups = _recompute_diff(model, proc, prompts)
    assert mean_diff < 1e-3
    assert all(len(g) == 3 for g in groups)


def test_text_only_after_image_forward_is_correct(tiny_dir, loaded, items):
    """Qwen-VL caches M-RoPE positions; a text-only prompt right after an image prompt must not
    reuse them: compare with a freshly loaded model that never saw an image."""
    import mlx_vlm

    model, proc = loaded
    img_prompt = encode_prompt(proc, model, items[0], template=TEMPLATE)
    text_prompt = encode_prompt(proc, model, items[1].with_(image=None), template=TEMPLATE)
    assert img_prompt.rope_delta != 0 and text_prompt.rope_delta == 0
    _group(model, proc, img_prompt, 2, 0.7, 8, mx.random.key(1))
    # the model's own forward with an image leaves cached position state behind
    ids = img_prompt.input_ids[None]
    model(ids, pixel_values=img_prompt.pixel_values, image_grid_thw=img_prompt.image_grid_thw)
    after = _group(model, proc, text_prompt, 2, 0.7, 8, mx.random.key(2))
    mean_diff, _ = _recompute_diff(model, proc, [text_prompt])
    assert mean_diff < 1e-3
    fresh, fproc = mlx_vlm.load(str(tiny_dir))
    ref = _group(
        fresh,
        fproc,
        encode_prompt(fproc, fresh, items[1].with_(image=None), template=TEMPLATE),
        2,
        0.7,
        8,
        mx.random.key(2),
    )
    assert [c.ids for c in after] == [c.ids for c in ref]
    np.testing.assert_allclose(after[0].logprobs, ref[0].logprobs, atol=1e-4)


def test_seeded_sampling(loaded, items):
    model, proc = loaded
    p = encode_prompt(proc, model, items[0], template=TEMPLATE)
    a = _group(model, proc, p, 4, 1.0, 10, mx.random.key(7))
    b = _group(model, proc, p, 4, 1.0, 10, mx.random.key(7))
    c = _group(model, proc, p, 4, 1.0, 10, mx.random.key(8))
    assert [x.ids for x in a] == [x.ids for x in b]
    assert [x.ids for x in a] != [x.ids for x in c]
    assert len({tuple(x.ids) for x in a}) > 1  # the group is not one sample repeated


def test_batched_prompts_equal_single_prompt_greedy(loaded, items):
    """Prompts of different lengths share one left-padded decode batch."""
    model, proc = loaded
    prompts = [
        encode_prompt(proc, model, items[0], template=TEMPLATE),
        encode_prompt(proc, model, "What is 2 plus 3?", None),
    ]
    # a third prompt of yet another length
    third = (encode_prompt(proc, model, it, template="easyr1") for it in items[1:])
    prompts.append(next(p for p in third if p.length not in {q.length for q in prompts}))
    assert len({p.length for p in prompts}) == 3
    batched = generate(model, proc, prompts, n=2, temperature=0.0, max_tokens=10)
    for p, g in zip(prompts, batched):
        single = _group(model, proc, p, 1, 0.0, 10)[0]
        assert g[0].ids == single.ids == g[1].ids
        np.testing.assert_allclose(g[0].logprobs, single.logprobs, atol=1e-4)


def _head_weight(model):
    lm = model.language_model
    return lm.model.embed_tokens if lm.args.tie_word_embeddings else lm.lm_head


def test_banned_tokens_never_sampled_and_eos_stops(tiny_dir, items):
    import mlx_vlm

    model, proc = mlx_vlm.load(str(tiny_dir))
    banned = banned_token_ids(model, proc)
    img_id = model.config.image_token_id
    assert {img_id, model.config.video_token_id, model.config.vision_start_token_id} <= set(banned)
    p = encode_prompt(proc, model, items[0], template=TEMPLATE)
    head = _head_weight(model)
    w = np.array(head.weight)
    # make the image placeholder the model's favourite token: a large row along random signs,
    # turned to the side the prompt's last hidden state points to
    from hallucue_mlx.forward import prefill

    w[img_id] = 50.0 * w.std() * np.sign(np.random.default_rng(0).standard_normal(w.shape[1]))
    head.weight = mx.array(w)
    first, _ = prefill(model, p)
    if int(mx.argmax(first, axis=-1).item()) != img_id:
        w[img_id] = -w[img_id]
        head.weight = mx.array(w)
        first, _ = prefill(model, p)
    assert int(mx.argmax(first, axis=-1).item()) == img_id
    out = _group(model, proc, p, 3, 1.0, 12, mx.random.key(0))
    assert all(img_id not in c.ids and not set(c.ids) & set(banned) for c in out)
    assert all(c.truncated and len(c.ids) == 12 for c in out)
    # now make EOS the favourite: every completion is exactly [eos], not truncated, empty text
    eos = eos_token_ids(model, proc)[0]
    w[eos] = w[img_id]
    w[img_id] = 0
    head.weight = mx.array(w)
    out = _group(model, proc, p, 3, 1.0, 12, mx.random.key(0))
    assert all(
        c.ids == [eos] and not c.truncated and c.text == "" and len(c.logprobs) == 1 for c in out
    )


def test_encode_prompt_image_tokens_and_text_positions(loaded, items):
    model, proc = loaded
    p = encode_prompt(proc, model, items[0], template=TEMPLATE)
    assert items[0].image.size == (112, 112)
    assert int((p.input_ids == model.config.image_token_id).sum()) == 16
    assert p.image_features.shape[0] == 16
    t = encode_prompt(proc, model, "hello", None)
    assert t.image_features is None
    np.testing.assert_array_equal(np.array(t.position_ids[0, 0]), np.arange(t.length))


def test_folded_lora_decodes_the_same_tokens_and_restores_the_weights(tiny_dir, items):
    """Rollouts fold LoRA into the base weights (one matmul per layer while decoding): the same
    sampled tokens, log-probs equal to float rounding, and the unfolded weights back afterwards."""
    import mlx_vlm
    from mlx.utils import tree_flatten

    from hallucue_mlx.models.lora import LoraConfig, LoRALinear, apply_lora

    model, proc = mlx_vlm.load(str(tiny_dir))
    apply_lora(model, LoraConfig(rank=4, alpha=8))
    key = mx.random.key(3)
    for i, m in enumerate(x for _, x in model.named_modules() if isinstance(x, LoRALinear)):
        m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape, key=mx.random.split(key, 128)[i])
    before = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    prompts = [encode_prompt(proc, model, it, template=TEMPLATE) for it in items[:3]]
    args = (3, 1.0, 16, mx.random.key(7))
    plain = generate(model, proc, prompts, *args, fold_lora=False)
    folded = generate(model, proc, prompts, *args)
    for gp, gf in zip(plain, folded, strict=True):
        for cp, cf in zip(gp, gf, strict=True):
            assert cf.ids == cp.ids
            np.testing.assert_allclose(cf.logprobs, cp.logprobs, atol=1e-4)
    after = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(m.scale == 2.0 for _, m in model.named_modules() if isinstance(m, LoRALinear))
