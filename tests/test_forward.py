"""The forward pass the rollout, the loss and evaluation share (forward.py): the vocabulary head in
checkpointed chunks gives the unchunked log-probs, entropies and gradients, and the loss in
micro-batches (grpo.micro_batches) adds up to the whole batch's loss, metrics and gradients."""

from __future__ import annotations

import json
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hallucue_mlx.rewards as rewards  # noqa: E402
from hallucue_mlx.config import TrainConfig, build  # noqa: E402
from hallucue_mlx.data.synth import load_synth  # noqa: E402
from hallucue_mlx.forward import (  # noqa: E402
    completion_logprobs,
    encode_prompt,
    head_logprobs,
    logit_bias,
)
from hallucue_mlx.grpo import (  # noqa: E402
    LossConfig,
    make_batch,
    micro_batches,
    policy_loss,
    reference_logprobs,
)
from hallucue_mlx.models.arch import head_chunk_rows  # noqa: E402
from hallucue_mlx.models.lora import LoraConfig, LoRALinear, apply_lora  # noqa: E402
from hallucue_mlx.rollout import generate  # noqa: E402
from hallucue_mlx.train import train  # noqa: E402


def _model(path, rank=4):
    import mlx_vlm

    model, proc = mlx_vlm.load(str(path))
    apply_lora(model, LoraConfig(rank=rank))
    for i, m in enumerate(x for _, x in model.named_modules() if isinstance(x, LoRALinear)):
        m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape, key=mx.random.key(100 + i))
    mx.eval(model.parameters())
    return model, proc


def _batch(model, proc, prompts=3, n=3, tokens=8):
    items = load_synth("train", n=prompts, seed=0)
    enc = [encode_prompt(proc, model, it, template="short") for it in items]
    groups = generate(
        model, proc, enc, n=n, temperature=1.0, max_tokens=tokens, key=mx.random.key(0)
    )
    comps = [c for g in groups for c in g]
    adv = np.linspace(-1, 1, len(comps)).astype(np.float32)
    batch = make_batch(enc, [c.ids for c in comps], [c.logprobs for c in comps], adv)
    batch.old_logps = batch.old_logps - 0.05  # ratio != 1: clipping and the loss value move
    return batch


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.array(a).ravel() for _, a in tree_flatten(tree)])


def _chunked_vs_whole(model, batch, bias, rows):
    """(log-probs, entropy, gradients of a weighted sum) unchunked and with `rows` per chunk."""
    w = mx.random.normal(batch.completion_ids.shape, key=mx.random.key(7)) * batch.mask
    out = []
    for head_rows in (0, rows):

        def f(ids, head_rows=head_rows):
            lp, ent = completion_logprobs(
                model, batch.prompts, ids, bias, 1.0, True, head_rows=head_rows
            )
            return (lp * w).sum(), (lp, ent)

        (_, (lp, ent)), grads = nn.value_and_grad(model, f)(batch.completion_ids)
        mx.eval(lp, ent, grads)
        out.append((np.array(lp), np.array(ent), _flat(grads)))
    return out


def test_chunked_head_gives_the_unchunked_logprobs_entropy_and_gradients(tiny_dir):
    model, proc = _model(tiny_dir)
    bias = logit_bias(model, proc)
    batch = _batch(model, proc)
    (lp0, e0, g0), (lp1, e1, g1) = _chunked_vs_whole(model, batch, bias, rows=5)
    mask = np.array(batch.mask)
    np.testing.assert_allclose(lp1 * mask, lp0 * mask, atol=2e-5)
    np.testing.assert_allclose(e1 * mask, e0 * mask, atol=2e-5)
    assert np.abs(g0).max() > 1e-6
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-6 * np.abs(g0).max())


def test_head_logprobs_in_chunks_equal_one_piece(tiny_dir):
    model, proc = _model(tiny_dir)
    bias = logit_bias(model, proc)
    D = model.config.text_config.hidden_size
    h = mx.random.normal((37, D), key=mx.random.key(3))
    ids = mx.random.randint(0, 500, (37,), key=mx.random.key(4))
    whole = head_logprobs(model, h, ids, bias, 0.7, True, rows=0)
    for rows in (1, 8, 36):
        part = head_logprobs(model, h, ids, bias, 0.7, True, rows=rows)
        np.testing.assert_allclose(np.array(part[0]), np.array(whole[0]), atol=1e-5)
        np.testing.assert_allclose(np.array(part[1]), np.array(whole[1]), atol=1e-5)
    assert head_logprobs(model, h, ids, bias, 1.0, False, rows=8)[1] is None
    assert head_chunk_rows(151936) == 220 and head_chunk_rows(2048) == 16384


@pytest.fixture(scope="module")
def setup(tiny_dir):
    model, proc = _model(tiny_dir)
    bias = logit_bias(model, proc)
    batch = _batch(model, proc)
    batch.ref_logps = reference_logprobs(model, batch, bias, 1.0)
    return model, bias, batch


@pytest.mark.parametrize(
    "loss_type, size",
    [("dapo", 6), ("dapo", 3), ("dapo", 2), ("grpo", 1), ("dr_grpo", 2)],
    ids=["dapo-2 groups", "dapo-1 group", "dapo-2 of 3", "grpo-1 of 3", "dr_grpo-2 of 3"],
)
def test_micro_batches_add_up_to_the_batch(setup, loss_type, size):
    model, bias, batch = setup
    cfg = LossConfig(loss_type=loss_type, beta=0.01, temperature=1.0, max_completion_length=8)
    vg = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias))
    (loss, metrics), grads = vg(batch)
    mx.eval(loss, metrics, grads)
    parts = micro_batches(batch, size)
    assert sum(p.completion_ids.shape[0] for p in parts) == 9
    assert all(p.completion_ids.shape[0] <= size for p in parts)
    total = None
    for p in parts:
        out = vg(p)
        total = out if total is None else tree_map(lambda a, b: a + b, total, out)
        mx.eval(total)
    (s_loss, s_metrics), s_grads = total
    np.testing.assert_allclose(float(s_loss), float(loss), rtol=1e-5, atol=1e-6)
    for k in metrics:
        np.testing.assert_allclose(float(s_metrics[k]), float(metrics[k]), rtol=1e-5, atol=1e-7)
    g, sg = _flat(grads), _flat(s_grads)
    assert np.abs(g).max() > 1e-6
    np.testing.assert_allclose(sg, g, rtol=1e-4, atol=1e-6 * np.abs(g).max())
    assert micro_batches(batch, 0) == [batch] and micro_batches(batch, 9) == [batch]


def _score(response, item, cfg=None):
    acc = float(sum(response.encode()) % 3 == 0)
    return rewards.Reward(acc, acc, 1.0, rewards.Grade(None, bool(acc), True))


@pytest.mark.slow
def test_a_training_in_micro_batches_matches_one_batch(tiny_dir, tmp_path):
    """Two steps in one-group micro-batches and as one batch: the same rollouts (the first
    step's exactly), metrics and adapters within float summation order."""
    settings = dict(
        steps=2,
        n_train=6,
        prompts_per_step=3,
        num_generations=3,
        max_completion_length=8,
        eval_every=0,
        beta=0.01,
        learning_rate=1e-2,
        prompt_template="short",
    )
    seen = {}
    for size in (9, 3):
        cfg = build(
            TrainConfig, dict(settings, micro_batch_size_per_device_for_update=size), "train"
        )
        out = tmp_path / str(size)
        train(cfg, tiny_dir, out, quiet=True, reward_fn=_score)
        adapter = mx.load(str(out / "adapter" / "adapters.safetensors"))
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        steps = [d for d in lines if "event" not in d]
        rolls = (out / "rollouts.jsonl").read_text().splitlines()
        seen[size] = ({k: np.array(v) for k, v in adapter.items()}, steps, rolls)
    (a9, s9, r9), (a3, s3, r3) = seen[9], seen[3]
    assert json.loads(r9[0]) == json.loads(r3[0])
    for d9, d3 in zip(s9, s3):
        for k in ("loss", "kl", "entropy", "grad_norm", "reward"):
            assert d3[k] == pytest.approx(d9[k], rel=1e-4, abs=1e-6), k
    for k in a9:
        # AdamW divides by the root of the second moment: a gradient near 0 moves its weight by
        # up to the learning rate whatever its size, so summation-order noise in such a gradient
        # can move a weight by up to a step. Nearly every weight agrees to 0.1% of a step; none
        # by more than one step (a lost or doubled micro-batch moves many by more)
        close = np.isclose(a3[k], a9[k], rtol=1e-4, atol=1e-5)
        assert close.mean() >= 0.99, (k, close.mean())
        assert np.abs(a3[k] - a9[k]).max() <= settings["learning_rate"], k


@pytest.mark.slow
@pytest.mark.realwidth
def test_chunked_head_at_real_width_and_vocabulary(tmp_path):
    """Qwen2.5-VL-3B's widths and 151,936-token vocabulary at one text layer: the chunked head
    (the default chunk, 220 positions) gives the unchunked log-probs, entropies and LoRA
    gradients."""
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.shapes import build_real_shape

    path = build_real_shape("qwen2.5-vl-3b", tmp_path / "m", text_layers=1, vision_layers=1)
    model, proc = load_model(str(path), dtype="float32")
    apply_lora(model, LoraConfig(rank=4))
    for i, m in enumerate(x for _, x in model.named_modules() if isinstance(x, LoRALinear)):
        m.lora_b = 0.01 * mx.random.normal(m.lora_b.shape, key=mx.random.key(100 + i))
    bias = logit_bias(model, proc)
    item = load_synth("train", n=1, seed=0)[0]
    prompt = encode_prompt(proc, model, item, template="short")
    rng = np.random.default_rng(0)
    comps = [[int(x) for x in rng.integers(10, 150000, 150)] for _ in range(3)]  # 450 > 220
    batch = make_batch([prompt], comps, [[-1.0] * 150] * 3, np.zeros(3))
    (lp0, e0, g0), (lp1, e1, g1) = _chunked_vs_whole(model, batch, bias, rows=None)
    np.testing.assert_allclose(lp1, lp0, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(e1, e0, rtol=1e-5, atol=1e-4)
    assert np.abs(g0).max() > 0
    np.testing.assert_allclose(g1, g0, rtol=1e-3, atol=1e-5 * np.abs(g0).max())
