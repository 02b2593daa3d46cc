"""The GRPO objective: advantages, each loss type against hand-computed numbers, clipping, zero
advantages -> zero gradient, KL 0 at step 0 and the LoRA-off reference = the base model."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.forward import (  # noqa: E402
    completion_logprobs,
    encode_prompt,
    logit_bias,
    token_logprobs,
)
from hallucue_mlx.grpo import (  # noqa: E402
    LossConfig,
    group_advantages,
    grpo_loss,
    k3_kl,
    make_batch,
    policy_loss,
    reference_logprobs,
)
from hallucue_mlx.models.lora import LoraConfig, LoRALinear, apply_lora  # noqa: E402
from hallucue_mlx.rollout import generate  # noqa: E402

# ---------------------------------------------------------------- advantages


def test_group_advantages_scalings():
    r = np.array([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    adv, m = group_advantages(r, 4, "group")
    std0 = np.std([1, 0, 0, 0], ddof=1)  # 0.5, unbiased like torch.std
    np.testing.assert_allclose(adv[:4], (np.array([1, 0, 0, 0]) - 0.25) / (std0 + 1e-4), rtol=1e-6)
    np.testing.assert_array_equal(adv[4:], 0)
    assert m["frac_reward_zero_std"] == 0.5
    assert m["reward"] == pytest.approx(0.375)
    assert m["reward_std"] == pytest.approx(std0 / 2)
    adv_none, _ = group_advantages(r, 4, "none")
    np.testing.assert_allclose(adv_none[:4], [0.75, -0.25, -0.25, -0.25])
    adv_b, mb = group_advantages(r, 4, "batch")
    sb = np.std(r, ddof=1)
    np.testing.assert_allclose(adv_b[:4], (np.array([1, 0, 0, 0]) - 0.25) / (sb + 1e-4), rtol=1e-6)
    assert mb["reward_std"] == pytest.approx(sb)
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(r, 3)


# ---------------------------------------------------------------- hand-computed objective

LOGPS = mx.array([[-1.0, -2.0, 0.0], [-0.5, -1.5, -1.0]])
OLD = mx.array([[-1.2, -1.0, 0.0], [-0.5, -1.0, -2.0]])
MASK = mx.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
ADV = mx.array([1.0, -1.0])
# ratios: [[e^0.2, e^-1], [1, e^-0.5, e^1]] with epsilon 0.2 / epsilon_high 0.28:
# row 0 (A=+1): -min(r, clip r) = [-1.2214028, -0.3678794]    (e^-1 < 0.8 but A > 0: not clipped)
# row 1 (A=-1): [1, 0.8 (clipped low: 0.6065 -> 0.8), 2.7182818 (A < 0: not clipped)]
PER_TOKEN = [[-1.2214028, -0.3678794], [1.0, 0.8, 2.7182818]]


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        ("grpo", (sum(PER_TOKEN[0]) / 2 + sum(PER_TOKEN[1]) / 3) / 2),  # 0.3557264
        ("dapo", (sum(PER_TOKEN[0]) + sum(PER_TOKEN[1])) / 5),  # 0.5857999
        ("bnpo", (sum(PER_TOKEN[0]) + sum(PER_TOKEN[1])) / 5),
        ("dr_grpo", (sum(PER_TOKEN[0]) + sum(PER_TOKEN[1])) / (2 * 4)),  # 0.3661250
    ],
)
def test_clipped_objective_matches_hand_computation(loss_type, expected):
    cfg = LossConfig(loss_type=loss_type, epsilon=0.2, epsilon_high=0.28, max_completion_length=4)
    loss, m = grpo_loss(LOGPS, OLD, ADV, MASK, cfg)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert float(m["clip_ratio/low_mean"]) == pytest.approx(1 / 5)
    assert float(m["clip_ratio/high_mean"]) == 0.0
    assert float(m["clip_ratio/region_mean"]) == pytest.approx(1 / 5)


def test_clipped_tokens_get_no_gradient():
    cfg = LossConfig(loss_type="dapo", epsilon=0.2, epsilon_high=0.28)
    g = np.array(mx.grad(lambda lp: grpo_loss(lp, OLD, ADV, MASK, cfg)[0])(LOGPS))
    # d/dlogp of -r*A/5 is -A*r/5 where not clipped; 0 where clipped or padded
    np.testing.assert_allclose(g[0], [-1.2214028 / 5, -0.3678794 / 5, 0.0], atol=1e-6)
    assert g[1, 1] == 0.0
    assert g[1, 2] == pytest.approx(2.7182818 / 5, abs=1e-6)


def test_high_clip_with_positive_advantage():
    cfg = LossConfig(loss_type="dapo", epsilon=0.2, epsilon_high=0.28)
    lp, old = mx.array([[0.0, 0.0]]), mx.array([[-1.0, 0.0]])  # ratios e, 1
    loss, m = grpo_loss(lp, old, mx.array([2.0]), mx.ones((1, 2)), cfg)
    assert float(loss) == pytest.approx(-(1.28 * 2 + 1 * 2) / 2, abs=1e-6)
    assert float(m["clip_ratio/high_mean"]) == pytest.approx(0.5)


def test_sequence_level_importance_sampling():
    cfg = LossConfig(
        loss_type="grpo", importance_sampling_level="sequence", epsilon=0.2, epsilon_high=0.28
    )
    loss, _ = grpo_loss(LOGPS, OLD, ADV, MASK, cfg)
    # row 0: exp(mean(0.2, -1)) = e^-0.4 = 0.6703200 (A > 0: unclipped) -> -0.67032 per token
    # row 1: exp(mean(0, -0.5, 1)) = e^(1/6) = 1.1813604 (inside the range) -> +1.1813604 per token
    assert float(loss) == pytest.approx((-0.6703200 + 1.1813604) / 2, abs=1e-6)
    cfg = LossConfig(
        loss_type="dapo", importance_sampling_level="sequence", epsilon=0.2, epsilon_high=0.28
    )
    loss, _ = grpo_loss(LOGPS, OLD, ADV, MASK, cfg)
    assert float(loss) == pytest.approx((-0.6703200 * 2 + 1.1813604 * 3) / 5, abs=1e-6)


def test_k3_kl_and_beta_term():
    assert float(k3_kl(mx.array(-1.0), mx.array(-2.0))) == pytest.approx(np.exp(-1.0), abs=1e-7)
    assert float(k3_kl(mx.array(-1.3), mx.array(-1.3))) == 0.0
    ref = LOGPS - 1.0  # d = -1 on every token: kl = e^-1
    base, _ = grpo_loss(LOGPS, OLD, ADV, MASK, LossConfig(loss_type="dapo", epsilon_high=0.28))
    with_kl, m = grpo_loss(
        LOGPS, OLD, ADV, MASK, LossConfig(loss_type="dapo", epsilon_high=0.28, beta=0.1), ref
    )
    assert float(with_kl) == pytest.approx(float(base) + 0.1 * np.exp(-1.0), abs=1e-6)
    assert float(m["kl"]) == pytest.approx(np.exp(-1.0), abs=1e-6)


# ---------------------------------------------------------------- on a tiny model


def _load(tiny_dir):
    import mlx_vlm

    return mlx_vlm.load(str(tiny_dir))


def _rollout_batch(model, proc, advantages):
    from hallucue_mlx.data.synth import load_synth

    items = load_synth("train", n=2, seed=0)
    prompts = [encode_prompt(proc, model, it, template="short") for it in items]
    groups = generate(
        model, proc, prompts, n=3, temperature=1.0, max_tokens=8, key=mx.random.key(0)
    )
    comps = [c for g in groups for c in g]
    return make_batch(prompts, [c.ids for c in comps], [c.logprobs for c in comps], advantages)


def _randomize_b(model):
    for i, m in enumerate(x for _, x in model.named_modules() if isinstance(x, LoRALinear)):
        m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape, key=mx.random.key(100 + i))
    mx.eval(model.parameters())


def test_zero_advantages_give_zero_policy_gradient(tiny_dir):
    model, proc = _load(tiny_dir)
    apply_lora(model, LoraConfig(rank=4))
    _randomize_b(model)
    bias = logit_bias(model, proc)
    cfg = LossConfig(loss_type="grpo", temperature=1.0)
    batch = _rollout_batch(model, proc, np.zeros(6))
    vg = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias))
    (loss, _), grads = vg(batch)
    flat = tree_flatten(grads)
    assert flat and all(k.endswith((".lora_a", ".lora_b")) for k, _ in flat)
    assert float(loss) == 0.0 and all(float(mx.abs(g).max()) == 0.0 for _, g in flat)
    batch.advantages = mx.array([1.0, -1.0, 0.5, -0.5, 0.0, 0.0])
    (_, _), grads = vg(batch)
    assert max(float(mx.abs(g).max()) for _, g in tree_flatten(grads)) > 1e-6


def test_kl_zero_at_step_zero_and_reference_is_the_base_model(tiny_dir):
    model, proc = _load(tiny_dir)
    base, _ = _load(tiny_dir)
    apply_lora(model, LoraConfig(rank=4))
    bias = logit_bias(model, proc)
    batch = _rollout_batch(model, proc, np.array([1.0, -1.0, 0.0, 0.5, -0.5, 0.0]))
    batch.ref_logps = reference_logprobs(model, batch, bias, 1.0)
    cfg = LossConfig(loss_type="dapo", beta=0.01, temperature=1.0)
    _, m = policy_loss(model, batch, cfg, bias)
    assert float(m["kl"]) == 0.0  # fresh LoRA (B = 0): the policy is the reference
    _randomize_b(model)
    ref = reference_logprobs(model, batch, bias, 1.0)
    base_lp, _ = completion_logprobs(base, batch.prompts, batch.completion_ids, bias, 1.0)
    mask = np.array(batch.mask)
    np.testing.assert_allclose(np.array(ref) * mask, np.array(base_lp) * mask, atol=1e-5)
    pol, _ = completion_logprobs(model, batch.prompts, batch.completion_ids, bias, 1.0)
    assert (np.abs(np.array(pol) - np.array(ref)) * mask).max() > 1e-4  # LoRA is back on after
    batch.ref_logps = ref
    _, m = policy_loss(model, batch, cfg, bias)
    assert float(m["kl"]) > 0.0


def test_gradient_checkpointing_gives_the_same_gradients(tiny_dir):
    model, proc = _load(tiny_dir)
    apply_lora(model, LoraConfig(rank=4))
    _randomize_b(model)
    bias = logit_bias(model, proc)
    batch = _rollout_batch(model, proc, np.array([1.0, -1.0, 0.0, 0.5, -0.5, 0.0]))
    cfg = LossConfig(loss_type="dapo", temperature=1.0)
    batch.old_logps = batch.old_logps - 0.05  # ratio != 1 so the loss value is informative too
    results = []
    for ck in (False, True):
        vg = nn.value_and_grad(model, lambda b, ck=ck: policy_loss(model, b, cfg, bias, ck))
        (loss, _), grads = vg(batch)
        results.append((float(loss), dict(tree_flatten(grads))))
    (l0, g0), (l1, g1) = results
    assert l0 == pytest.approx(l1, abs=1e-6) and l0 != 0.0
    for k in g0:
        np.testing.assert_allclose(np.array(g1[k]), np.array(g0[k]), atol=1e-6)


def test_token_logprobs_match_log_softmax_entropy_and_gradient():
    logits = 4.0 * mx.random.normal((3, 5, 11), key=mx.random.key(1))
    ids = mx.random.randint(0, 11, (3, 5), key=mx.random.key(2))

    def reference(z):
        lp_all = z - mx.logsumexp(z, axis=-1, keepdims=True)
        return mx.take_along_axis(lp_all, ids[..., None], axis=-1)[..., 0], lp_all

    lp, ent = token_logprobs(logits, ids, with_entropy=True)
    want, lp_all = reference(logits)
    np.testing.assert_allclose(np.array(lp), np.array(want), atol=1e-5)
    want_ent = -(mx.exp(lp_all) * lp_all).sum(axis=-1)
    np.testing.assert_allclose(np.array(ent), np.array(want_ent), atol=1e-5)
    w = mx.random.normal((3, 5), key=mx.random.key(3))  # any weighting of the tokens
    g = mx.grad(lambda z: (token_logprobs(z, ids)[0] * w).sum())(logits)
    g_ref = mx.grad(lambda z: (reference(z)[0] * w).sum())(logits)
    np.testing.assert_allclose(np.array(g), np.array(g_ref), atol=1e-5)
    assert token_logprobs(logits, ids)[1] is None


def test_groups_run_only_their_own_columns_with_the_same_result(tiny_dir):
    """make_batch records each group's longest completion; the loss runs only those columns
    and gives the same log-probs, entropy, loss and gradients as running all of them."""
    model, proc = _load(tiny_dir)
    apply_lora(model, LoraConfig(rank=4))
    _randomize_b(model)
    bias = logit_bias(model, proc)
    from hallucue_mlx.data.synth import load_synth

    items = load_synth("train", n=2, seed=0)
    prompts = [encode_prompt(proc, model, it) for it in items]
    rng = np.random.default_rng(0)
    lengths = [9, 2, 5, 3, 1, 2]  # group 0 runs 9 columns, group 1 runs 3
    comps = [[int(x) for x in rng.integers(10, 800, n)] for n in lengths]
    batch = make_batch(prompts, comps, [[-1.0] * n for n in lengths], np.linspace(-1, 1, 6))
    assert batch.group_lengths == [9, 3] and batch.completion_ids.shape == (6, 9)
    cfg = LossConfig(loss_type="dapo", beta=0.01, temperature=1.0)
    batch.old_logps = batch.old_logps - 0.05
    mask = np.array(batch.mask)
    results = []
    for trim in (True, False):
        batch.group_lengths = [9, 3] if trim else None
        lp, ent = completion_logprobs(
            model, prompts, batch.completion_ids, bias, 1.0, True, group_lengths=batch.group_lengths
        )
        batch.ref_logps = reference_logprobs(model, batch, bias, 1.0)
        vg = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias))
        (loss, m), grads = vg(batch)
        results.append(
            (
                np.array(lp) * mask,
                np.array(ent) * mask,
                float(loss),
                float(m["kl"]),
                dict(tree_flatten(grads)),
            )
        )
    (lp0, e0, l0, k0, g0), (lp1, e1, l1, k1, g1) = results
    np.testing.assert_allclose(lp0, lp1, atol=1e-5)
    np.testing.assert_allclose(e0, e1, atol=1e-5)
    assert l0 == pytest.approx(l1, abs=1e-6) and k0 == pytest.approx(k1, abs=1e-6)
    for k in g0:
        np.testing.assert_allclose(np.array(g0[k]), np.array(g1[k]), atol=1e-6)
