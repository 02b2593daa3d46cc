"""The GRPO objective as plain functions, with TRL's definitions and metric names.

References: TRL's GRPOTrainer documentation ("Loss Types", "Logged metrics"):
https://huggingface.co/docs/trl/main/en/grpo_trainer. Per token, with ratio r = pi / pi_old
(pi_old: the behaviour log-probs kept by the rollout, at the sampling temperature):

    l = -min(r * A, clip(r, 1 - epsilon, 1 + epsilon_high) * A) + beta * KL_k3(pi || pi_ref)

    grpo:     mean over sequences of (sum_t l / |o_i|)
    dapo:     sum of l over all completion tokens / number of completion tokens (bnpo: same here,
              the whole generation batch in one loss)
    dr_grpo:  sum of l / (number of sequences * max_completion_length)

Data-parallel training splits a step's batch over processes by whole groups, and each process
splits its share into micro-batches for the loss (`micro_batches`, EasyR1's
micro_batch_size_per_device_for_update), the same on every backend. Each piece's loss and
token-mean metrics are normalised by the whole batch's counts (`BatchTotals`), so the pieces'
losses, gradients and metrics add up to the whole batch's: summing them gives what one graph
computes, up to float summation order.

importance_sampling_level="sequence" (GSPO) uses one ratio per sequence,
exp(mean_t(log pi - log pi_old)). The KL reference is the same model with LoRA switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from hallucue_mlx.config import SCALE_REWARDS
from hallucue_mlx.forward import PromptInputs, completion_logprobs
from hallucue_mlx.models.lora import lora_disabled


@dataclass
class LossConfig:
    loss_type: str = "dapo"
    epsilon: float = 0.2
    epsilon_high: float | None = None  # None: same as epsilon
    beta: float = 0.0
    importance_sampling_level: str = "token"
    max_completion_length: int = 256  # dr_grpo's constant normaliser
    temperature: float = 1.0  # log-probs are taken at the sampling temperature
    head_rows: int | None = None  # positions per chunk of the vocabulary head (None: default)


@dataclass(frozen=True)
class BatchTotals:
    """The whole step batch's counts, for a share of it: completion tokens and sequences."""

    tokens: int
    sequences: int


# ---------------------------------------------------------------- advantages


def group_advantages(
    rewards: np.ndarray, group_size: int, scale_rewards: str = "group"
) -> tuple[np.ndarray, dict]:
    """(r - group mean) / (std + 1e-4), TRL's scale_rewards: std per group, over the batch, or none.

    std is the unbiased one (torch.std, as TRL). Returns advantages and the reward metrics
    reward, reward_std, frac_reward_zero_std.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards {scale_rewards!r} is not one of {SCALE_REWARDS}")
    r = np.asarray(rewards, np.float64)
    if r.size % group_size:
        raise ValueError(f"{r.size} rewards do not split into groups of {group_size}")
    g = r.reshape(-1, group_size)
    mean = g.mean(axis=1, keepdims=True)
    ddof = 1 if group_size > 1 else 0
    group_std = g.std(axis=1, ddof=ddof, keepdims=True)
    if scale_rewards == "batch":
        std = np.full_like(g, r.std(ddof=1 if r.size > 1 else 0))
    else:
        std = np.broadcast_to(group_std, g.shape)
    adv = g - mean
    if scale_rewards != "none":
        adv = adv / (std + 1e-4)
    zero = np.isclose(std, 0.0)
    metrics = {
        "reward": float(r.mean()),
        "reward_std": float(std[:, 0].mean()) if scale_rewards != "batch" else float(std[0, 0]),
        "frac_reward_zero_std": float(zero.mean()),
    }
    return adv.reshape(-1).astype(np.float32), metrics


# ---------------------------------------------------------------- objective


def _masked_mean(x: mx.array, mask: mx.array, totals: BatchTotals | None = None) -> mx.array:
    """Mean over the masked tokens; with totals, this share's part of the whole batch's mean."""
    if totals is None:
        return (x * mask).sum() / mx.maximum(mask.sum(), 1.0)
    return (x * mask).sum() / max(totals.tokens, 1)


def loss_metric_names(with_kl: bool) -> list[str]:
    """The metrics policy_loss returns (sorted), e.g. for a share of the batch with no groups."""
    names = ["clip_ratio/high_mean", "clip_ratio/low_mean", "clip_ratio/region_mean", "entropy"]
    return sorted(names + (["kl"] if with_kl else []))


def k3_kl(logps: mx.array, ref_logps: mx.array) -> mx.array:
    """Schulman's k3 estimator of KL(pi || pi_ref) per token: exp(d) - d - 1, d = ref - logp."""
    d = ref_logps - logps
    return mx.exp(d) - d - 1


def grpo_loss(
    logps: mx.array,
    old_logps: mx.array,
    advantages: mx.array,
    mask: mx.array,
    cfg: LossConfig,
    ref_logps: mx.array | None = None,
    totals: BatchTotals | None = None,
) -> tuple[mx.array, dict[str, mx.array]]:
    """The clipped surrogate (+ beta * KL) reduced per cfg.loss_type; returns (loss, metrics).

    logps, old_logps, ref_logps, mask: (B, T); advantages: (B,). mask is 1 on completion tokens
    (the final EOS included), 0 on padding. totals: these rows are a share of a larger batch;
    normalise by its counts (the shares' losses and metrics then add up to the whole batch's).
    """
    mask = mask.astype(mx.float32)
    old = mx.stop_gradient(old_logps)
    log_ratio = logps - old
    if cfg.importance_sampling_level == "sequence":
        log_w = ((log_ratio * mask).sum(-1) / mx.maximum(mask.sum(-1), 1.0))[:, None]
    else:
        log_w = log_ratio
    ratio = mx.exp(log_w)
    eps_low = cfg.epsilon
    eps_high = cfg.epsilon if cfg.epsilon_high is None else cfg.epsilon_high
    adv = mx.stop_gradient(advantages)[:, None]
    per_token = -mx.minimum(ratio * adv, mx.clip(ratio, 1 - eps_low, 1 + eps_high) * adv)
    kl = None
    if ref_logps is not None:
        kl = k3_kl(logps, mx.stop_gradient(ref_logps))
        if cfg.beta:
            per_token = per_token + cfg.beta * kl
    if cfg.loss_type == "grpo":
        per_seq = (per_token * mask).sum(-1) / mx.maximum(mask.sum(-1), 1.0)
        loss = per_seq.mean() if totals is None else per_seq.sum() / totals.sequences
    elif cfg.loss_type in ("dapo", "bnpo"):
        loss = _masked_mean(per_token, mask, totals)
    else:  # dr_grpo
        rows = mask.shape[0] if totals is None else totals.sequences
        loss = (per_token * mask).sum() / (rows * cfg.max_completion_length)

    ratio_b = mx.broadcast_to(ratio, mask.shape)
    low = ((ratio_b < 1 - eps_low) & (adv < 0)).astype(mx.float32)
    high = ((ratio_b > 1 + eps_high) & (adv > 0)).astype(mx.float32)
    metrics = {
        "clip_ratio/low_mean": mx.stop_gradient(_masked_mean(low, mask, totals)),
        "clip_ratio/high_mean": mx.stop_gradient(_masked_mean(high, mask, totals)),
        "clip_ratio/region_mean": mx.stop_gradient(
            _masked_mean(mx.maximum(low, high), mask, totals)
        ),
    }
    if kl is not None:
        metrics["kl"] = mx.stop_gradient(_masked_mean(kl, mask, totals))
    return loss, metrics


# ---------------------------------------------------------------- the batch the loss sees


@dataclass
class PolicyBatch:
    """One rollout batch, ready for the loss: rows grouped by prompt (G rows per prompt)."""

    prompts: list[PromptInputs]
    completion_ids: mx.array  # (B, T) int32, right-padded
    mask: mx.array  # (B, T) float32
    old_logps: mx.array  # (B, T) behaviour log-probs from the rollout
    advantages: mx.array  # (B,)
    ref_logps: mx.array | None = None  # (B, T) LoRA-off log-probs, when beta > 0 or KL is logged
    totals: BatchTotals | None = None  # set when this is a share of the step's batch
    group_lengths: list[int] | None = None  # longest completion per prompt: columns it runs


def make_batch(
    prompts: list[PromptInputs],
    completions: list[list[int]],
    logprobs: list[list[float]],
    advantages: np.ndarray,
    pad_id: int = 0,
) -> PolicyBatch:
    """Pad completions (grouped by prompt, equal group sizes) into arrays."""
    B = len(completions)
    if B % len(prompts):
        raise ValueError(f"{B} completions do not split evenly over {len(prompts)} prompts")
    T = max(1, max(len(c) for c in completions))
    ids = np.full((B, T), pad_id, np.int32)
    lps = np.zeros((B, T), np.float32)
    mask = np.zeros((B, T), np.float32)
    for i, (c, lp) in enumerate(zip(completions, logprobs)):
        ids[i, : len(c)] = c
        lps[i, : len(c)] = lp
        mask[i, : len(c)] = 1
    G = B // len(prompts)
    return PolicyBatch(
        prompts,
        mx.array(ids),
        mx.array(mask),
        mx.array(lps),
        mx.array(np.asarray(advantages, np.float32)),
        group_lengths=[
            max(len(c) for c in completions[p * G : (p + 1) * G]) for p in range(len(prompts))
        ],
    )


def micro_batches(batch: PolicyBatch, size: int = 0) -> list[PolicyBatch]:
    """The batch as micro-batches of at most `size` completions (EasyR1's
    micro_batch_size_per_device_for_update; 0 or at least the batch: the batch itself), each
    normalised by the batch's counts (its totals when it is itself a data-parallel share), so
    the micro-batches' losses, metrics and gradients add up to the batch's. With size >= G a
    micro-batch is size // G whole groups; below G each group is cut into pieces of at most
    `size` completions (each piece runs its prompt again). A micro-batch keeps only the columns
    of its longest completion."""
    P = len(batch.prompts)
    B, T = batch.completion_ids.shape
    G = B // P
    if size <= 0 or size >= B:
        return [batch]
    totals = batch.totals or BatchTotals(int(batch.mask.sum().item()), B)
    lengths = batch.group_lengths or [T] * P
    # (prompt indices, first row, end row) of each micro-batch
    if size >= G:
        k = size // G
        spans = [(list(range(p, min(P, p + k))), p * G, min(P, p + k) * G) for p in range(0, P, k)]
    else:
        spans = [
            ([p], r, min(r + size, (p + 1) * G))
            for p in range(P)
            for r in range(p * G, (p + 1) * G, size)
        ]
    shares = []
    for groups, r0, r1 in spans:
        rows = slice(r0, r1)
        if size >= G:  # whole groups: each runs its own longest completion's columns
            own = [lengths[p] for p in groups]
        else:  # a piece of a group: its own longest completion's
            own = [int(batch.mask[rows].sum(axis=1).max().item())]
        cols = slice(0, max(1, min(T, max(own))))
        ref = None if batch.ref_logps is None else batch.ref_logps[rows, cols]
        shares.append(
            PolicyBatch(
                [batch.prompts[p] for p in groups],
                batch.completion_ids[rows, cols],
                batch.mask[rows, cols],
                batch.old_logps[rows, cols],
                batch.advantages[rows],
                ref,
                totals,
                own,
            )
        )
    return shares


def mini_batches(batch: PolicyBatch | None, k: int) -> list[PolicyBatch | None]:
    """The rollout batch as k mini-batches of whole groups (prompts), in order, as even as the
    groups allow (fewer when there are fewer groups): EasyR1's batching, one update per
    mini-batch (train.mini_batches). Each is a batch of its own, normalised by its own counts
    (EasyR1's token mean over a mini-batch). k = 1 (or no batch) returns [batch] unchanged."""
    if batch is None or k <= 1:
        return [batch]
    if batch.totals is not None:
        raise ValueError(
            "train.mini_batches > 1 splits a process's whole rollout batch; it does not combine "
            "with data parallelism (grid.parallel: data over several processes)"
        )
    P = len(batch.prompts)
    G = batch.completion_ids.shape[0] // P
    lengths = batch.group_lengths or [batch.completion_ids.shape[1]] * P
    bounds = [round(i * P / min(k, P)) for i in range(min(k, P) + 1)]
    out: list[PolicyBatch | None] = []
    for a, b in zip(bounds, bounds[1:]):
        rows = slice(a * G, b * G)
        cols = slice(0, max(1, min(batch.completion_ids.shape[1], max(lengths[a:b]))))
        out.append(
            PolicyBatch(
                batch.prompts[a:b],
                batch.completion_ids[rows, cols],
                batch.mask[rows, cols],
                batch.old_logps[rows, cols],
                batch.advantages[rows],
                None if batch.ref_logps is None else batch.ref_logps[rows, cols],
                None,
                lengths[a:b],
            )
        )
    return out


def policy_loss(
    model: nn.Module, batch: PolicyBatch, cfg: LossConfig, bias: mx.array, checkpoint: bool = False
) -> tuple[mx.array, dict[str, mx.array]]:
    """Loss forward for nn.value_and_grad(model, policy_loss): log-probs of the sampled tokens under
    the current policy, then grpo_loss; metrics include entropy (TRL's name)."""
    logps, ent = completion_logprobs(
        model,
        batch.prompts,
        batch.completion_ids,
        bias,
        cfg.temperature,
        True,
        checkpoint,
        batch.group_lengths,
        cfg.head_rows,
    )
    loss, metrics = grpo_loss(
        logps, batch.old_logps, batch.advantages, batch.mask, cfg, batch.ref_logps, batch.totals
    )
    metrics["entropy"] = _masked_mean(ent, batch.mask, batch.totals)
    return loss, metrics


def reference_logprobs(
    model: nn.Module,
    batch: PolicyBatch,
    bias: mx.array,
    temperature: float,
    evaluate: bool = True,
    head_rows: int | None = None,
) -> mx.array:
    """Log-probs under the base model (every LoRA scale 0), no gradient. evaluate=False returns
    the graph (built with LoRA off: LoRALinear reads its scale when the graph is built)."""

    with lora_disabled(model):
        ref, _ = completion_logprobs(
            model,
            batch.prompts,
            batch.completion_ids,
            bias,
            temperature,
            group_lengths=batch.group_lengths,
            head_rows=head_rows,
        )
        # evaluate while LoRA is off: the graph reads the scales when it is built, but be explicit
        ref = mx.stop_gradient(ref)
        if evaluate:
            mx.eval(ref)
    return ref
