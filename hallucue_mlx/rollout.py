"""Batched rollouts: prefill the prompts once, decode their G completions each as one batch.

Used by GRPO training (sampling at temperature T) and by evaluation (greedy, T=0). Prompts come
encoded (`forward.encode_prompt`: the image through the vision tower once, its features kept on
the `PromptInputs` and reused by the loss forward); this module only samples. Several prompts
decode together (left-padded KV caches with a mask, `forward.prefill_batch`).

Sampled token ids and their log-probs at the sampling temperature are kept (TRL's convention);
decoded text is for rewards and logs only and is never re-tokenized. The banned tokens
(`forward.logit_bias`) are banned while sampling and in the loss forward, so both see the same
distribution. Each decode step runs as one compiled graph over preallocated caches; the host
reads back only whether all rows stopped, every DONE_CHECK tokens. generate(compiled=False)
keeps the reference loop it is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_vlm.models.cache import KVCache

from hallucue_mlx.forward import PromptInputs, check_prompt_length, logit_bias, prefill_batch
from hallucue_mlx.models import arch
from hallucue_mlx.models.arch import lm_head
from hallucue_mlx.models.lora import lora_folded

SUPPORTED_FAMILIES = arch.FAMILIES


@dataclass
class Completion:
    ids: list[int]  # sampled ids, including the final EOS when the sequence stopped
    logprobs: list[float]  # log-prob of each sampled id at the sampling temperature
    text: str  # decoded without special tokens
    truncated: bool  # hit max_tokens without EOS


@dataclass
class Episode:
    """The unit that flows from rollout to reward to loss to the log."""

    item_id: str
    group: int  # index of the prompt within the step
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    text: str
    truncated: bool
    reward: float = 0.0
    accuracy: float = 0.0
    format: float = 0.0
    grader_error: bool = False
    advantage: float = 0.0
    corruption: str = "none"


# ---------------------------------------------------------------- model plumbing


def eos_token_ids(model: nn.Module, processor: Any) -> list[int]:
    ids = getattr(model.config, "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([] if ids is None else [ids])
    tok = getattr(processor, "tokenizer", processor)
    for t in (getattr(tok, "eos_token_id", None), tok.convert_tokens_to_ids("<|im_end|>")):
        if (
            isinstance(t, int)
            and t >= 0
            and t not in ids
            and t != getattr(tok, "unk_token_id", None)
        ):
            ids.append(t)
    if not ids:
        raise ValueError(
            "the model config and tokenizer name no EOS token; set eos_token_id in config.json"
        )
    return ids


# ---------------------------------------------------------------- sampling


def _draw(
    logp: mx.array,
    key: mx.array,
    rows: tuple[int, int] | None,
    noise_rows: mx.array | None = None,
) -> mx.array:
    """A categorical draw per row. rows=(first, total): these B rows are rows first..first+B of a
    batch of `total` rows, and draw the Gumbel noise those rows get in the whole batch's draw
    (mx.random.categorical is argmax(logits + gumbel(shape, key)), bit for bit); so a process
    that decodes a share of a step samples exactly what one process decoding all of it would.
    noise_rows: the rows' indices in that batch, where they are not consecutive (a decode that
    dropped its finished rows); each row still gets the noise it would get in the whole batch."""
    if rows is None:
        return mx.random.categorical(logp, key=key)
    first, total = rows
    noise = mx.random.gumbel((total, logp.shape[-1]), key=key)
    noise = noise[first : first + logp.shape[0]] if noise_rows is None else noise[noise_rows]
    return mx.argmax(noise + logp, axis=-1)


def _sample(
    logits: mx.array,
    bias: mx.array,
    temperature: float,
    top_p: float,
    key: mx.array,
    rows: tuple[int, int] | None = None,
    noise_rows: mx.array | None = None,
) -> tuple[mx.array, mx.array]:
    """Token ids (B,) and their log-probs at the sampling temperature (T=0: greedy, log-probs at
    T=1). rows and noise_rows: where these rows sit in the batch whose noise they draw (_draw)."""
    logits = logits.astype(mx.float32) + bias
    if temperature == 0:
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        tok = mx.argmax(logits, axis=-1)
    else:
        logits = logits / temperature
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if top_p < 1.0:
            # keep the smallest set of tokens whose mass reaches top_p; log-probs stay untruncated (TRL)
            order = mx.argsort(-logp, axis=-1)
            sorted_lp = mx.take_along_axis(logp, order, axis=-1)
            cum = mx.cumsum(mx.exp(sorted_lp), axis=-1)
            drop_sorted = (cum - mx.exp(sorted_lp)) >= top_p
            drop = mx.put_along_axis(mx.zeros_like(drop_sorted), order, drop_sorted, axis=-1)
            tok = _draw(mx.where(drop, -mx.inf, logp), key, rows, noise_rows)
        else:
            tok = _draw(logp, key, rows, noise_rows)
    lp = mx.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
    return tok.astype(mx.int32), lp


@lru_cache(maxsize=16)
def _sampler(temperature: float, top_p: float, rows: tuple[int, int] | None = None):
    """_sample compiled for one (temperature, top_p, rows): fewer small ops per decoded token."""
    return mx.compile(partial(_sample, temperature=temperature, top_p=top_p, rows=rows))


class _FixedKVCache:
    """One layer's keys and values in buffers of a fixed length, written at a device-side slot.

    Attention reads the first `visible` slots (the step's mask hides those not written yet), so
    the steps of a KEY_CHUNK-slot stretch have the same shapes (one compiled graph serves them)
    and the slot never has to be read back to the host. `offset` is also the RoPE offset
    Idefics3's Llama layers read."""

    def __init__(self, keys: mx.array, values: mx.array, offset: mx.array, visible: int):
        self.keys, self.values, self.offset, self.visible = keys, values, offset, visible

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        at = self.offset.reshape(1)
        self.keys = mx.slice_update(self.keys, keys, at, axes=(2,))
        self.values = mx.slice_update(self.values, values, at, axes=(2,))
        return self.keys[..., : self.visible, :], self.values[..., : self.visible, :]


# All-done is read back to the host once per this many tokens: a finished batch decodes at most
# this many steps of padding (cut off below), an unfinished one syncs 1/DONE_CHECK as often.
DONE_CHECK = 8
# The compiled step attends to the cache in stretches of this many slots: one trace per stretch
# (a few ms each), at most this many slots read past the last written one. Attending to the
# whole buffer instead would read max_tokens slots from the first token on.
KEY_CHUNK = 64
# A decode batch shrinks to its unfinished rows (_decode_compiled) but not below this many: below
# it a step costs about the same whatever the rows, and every new size is one more trace.
COMPACT_MIN_ROWS = 4
# The per-row arrays of a compiled decode step's `fixed` inputs, gathered when the batch shrinks.
ROW_ARRAYS = ("starts", "base", "noise_rows")


def _tiled_cache(caches: list, n: int, room: int) -> list[tuple[mx.array, mx.array]]:
    """Each layer's prefilled (P, H, L, D) keys and values repeated n times per prompt, with `room`
    zero slots after them: every decoded token is written in place."""
    out = []
    for c in caches:
        kv = []
        for a in (c.keys, c.values):
            a = mx.repeat(a, n, axis=0)
            extra = mx.zeros((a.shape[0], a.shape[1], room, a.shape[3]), a.dtype)
            kv.append(mx.concatenate([a, extra], axis=2))
        out.append((kv[0], kv[1]))
    return out


def _decode_eager(
    model: nn.Module,
    cache: list[tuple[mx.array, mx.array]],
    y: mx.array,
    lp: mx.array,
    done: mx.array,
    *,
    starts: mx.array,
    base: mx.array,
    prefix: int,
    max_tokens: int,
    keys: mx.array,
    sample: Any,
    bias: mx.array,
    eos: mx.array,
    pad_id: int,
    padded: bool,
) -> tuple[list[mx.array], list[mx.array]]:
    """The reference decode loop: one graph built per token over the keys so far, all-done read
    back every token (one step behind, so the next step is already queued). Takes the arrays out
    of `cache` (emptied), so each step's update can reuse their memory."""
    B = y.shape[0]
    decode_cache = []
    for k, v in cache:
        c = KVCache()
        c.keys, c.values, c.offset = k, v, prefix
        decode_cache.append(c)
    cache.clear()
    mask = None
    if padded:
        mask = (mx.arange(prefix + max_tokens)[None] >= starts[:, None])[:, None, None, :]
    toks, lps = [y], [lp]
    for t in range(1, max_tokens):
        pos = mx.broadcast_to((base + (t - 1))[None, :, None], (3, B, 1))
        # the mask covers the keys so far (Qwen's attention slices it itself, Llama's does not)
        m = None if mask is None else mask[..., : prefix + t]
        h = arch.text_forward(model, y[:, None], mask=m, cache=decode_cache, positions=pos)
        y_new, lp_new = sample(lm_head(model, h[:, -1]), bias, key=keys[t])
        y_new = mx.where(done, pad_id, y_new)
        done_new = done | (y_new[:, None] == eos[None]).any(axis=1)
        mx.async_eval(y_new, lp_new, done_new)
        if done.all().item():  # the previous step already finished every row
            break
        toks.append(y_new)
        lps.append(lp_new)
        y, done = y_new, done_new
    return toks, lps


def _decode_step(
    model: nn.Module, sample: Any, pad_id: int
) -> Callable[..., tuple[mx.array, mx.array, mx.array, list[mx.array], mx.array]]:
    """One decode step as a pure function of device arrays, for mx.compile:
    (fixed, last token, step t, done, keys and values of every layer, visible slots) -> the
    same carry for step t + 1, then token t's log-prob. `fixed` holds the per-call arrays: each
    row's first slot (`starts`, after its left padding) and next text position (`base`), the
    sampling keys, the logit bias and the EOS ids.

    Embedding, the decoder with the fixed-size caches, LM head, logit bias, sampling and the EOS
    bookkeeping are one graph; t stays on the device, so no step reads anything back."""

    def step(
        fixed: dict[str, mx.array],
        y: mx.array,
        t: mx.array,
        done: mx.array,
        kv: list[mx.array],
        visible: int,
    ) -> tuple[mx.array, mx.array, mx.array, list[mx.array], mx.array]:
        # the slot of the token fed in; the prefix is an array, not a constant of the graph: a
        # constant is compiled into the fused kernels, so each new prompt length rebuilt them
        # (measured: 0.7 s per new length on the CPU backend)
        at = fixed["prefix"] + t - 1
        span = mx.arange(visible)
        # left padding (before each row's start) and the slots not written yet are masked out
        mask = (span[None] >= fixed["starts"][:, None]) & (span[None] <= at)
        pos = mx.broadcast_to((fixed["base"] + (t - 1))[None, :, None], (3, y.shape[0], 1))
        cache = [_FixedKVCache(kv[i], kv[i + 1], at, visible) for i in range(0, len(kv), 2)]
        h = arch.text_forward(
            model, y[:, None], mask=mask[:, None, None, :], cache=cache, positions=pos
        )
        y_new, lp = sample(
            lm_head(model, h[:, -1]),
            fixed["bias"],
            key=fixed["keys"][t],
            noise_rows=fixed["noise_rows"],
        )
        y_new = mx.where(done, pad_id, y_new)
        done = done | (y_new[:, None] == fixed["eos"][None]).any(axis=1)
        return y_new, t + 1, done, [a for c in cache for a in (c.keys, c.values)], lp

    return step


def _decode_compiled(
    model: nn.Module,
    cache: list[tuple[mx.array, mx.array]],
    y: mx.array,
    lp: mx.array,
    done: mx.array,
    *,
    max_tokens: int,
    sample: Any,
    prefix: int,
    pad_id: int,
    compact: bool = True,
    **fixed: mx.array,
) -> tuple[np.ndarray, np.ndarray]:
    """The decode loop with one compiled graph per step (traced once per KEY_CHUNK tokens and
    batch size: the shapes are fixed by the preallocated caches) and all-done read back every
    DONE_CHECK tokens. compact: at those reads, once the unfinished rows fit in half the batch,
    the batch shrinks to them (rounded up to a power of two with finished rows, so a call traces
    at most a few sizes): the rows still decoding are the only ones computed, and each keeps its
    own sampling noise (fixed["noise_rows"]), so the tokens are those of the whole batch.
    Returns (ids, log-probs), (rows, steps) arrays, padding after a row's end. Takes the arrays
    out of `cache` (emptied), so each step's update can reuse their memory."""
    state = [mx.random.state]  # dropout's global RNG, should a LoRA layer in training mode use it
    step = mx.compile(_decode_step(model, sample, pad_id), inputs=state, outputs=state)
    fixed = {**fixed, "prefix": mx.array(prefix, dtype=mx.int32)}
    kv = [a for pair in cache for a in pair]
    cache.clear()
    slots = kv[0].shape[2]
    n_rows = y.shape[0]
    t = mx.array(1, dtype=mx.int32)
    segments: list[tuple[np.ndarray | None, list[mx.array], list[mx.array]]] = []
    live: np.ndarray | None = None  # the current rows' indices in the batch; None: all of them
    toks, lps = [y], [lp]
    for i in range(1, max_tokens):
        before = done
        visible = min(slots, prefix + KEY_CHUNK * -(-i // KEY_CHUNK))  # covers slot prefix + i - 1
        y, t, done, kv, lp = step(fixed, y, t, done, kv, visible)
        mx.async_eval(y, lp, done)
        toks.append(y)
        lps.append(lp)
        if i % DONE_CHECK:
            continue
        if not compact:
            # one step behind, so the step just queued keeps the device busy meanwhile
            if before.all().item():
                break
            continue
        finished = np.array(done)  # the step just queued: its rows are the ones to keep
        unfinished = np.flatnonzero(~finished)
        if unfinished.size == 0:  # the step just queued ended the last rows
            break
        size = max(COMPACT_MIN_ROWS, 1 << int(unfinished.size - 1).bit_length())
        if size > finished.shape[0] // 2:
            continue
        filler = np.flatnonzero(finished)[: size - unfinished.size]
        keep = np.sort(np.concatenate([unfinished, filler]))
        segments.append((live, toks, lps))
        idx = mx.array(keep, dtype=mx.int32)
        kv = [a[idx] for a in kv]
        y, done = y[idx], done[idx]
        fixed = {k: (v[idx] if k in ROW_ARRAYS else v) for k, v in fixed.items()}
        live = keep if live is None else live[keep]
        toks, lps = [], []
    segments.append((live, toks, lps))
    steps = sum(len(seg[1]) for seg in segments)
    ids = np.full((n_rows, steps), pad_id, dtype=np.int64)
    logps = np.zeros((n_rows, steps), dtype=np.float32)
    col = 0
    for rows, seg_toks, seg_lps in segments:
        if not seg_toks:
            continue
        width = len(seg_toks)
        where = slice(None) if rows is None else rows
        ids[where, col : col + width] = np.array(mx.stack(seg_toks, axis=1))
        logps[where, col : col + width] = np.array(mx.stack(seg_lps, axis=1))
        col += width
    return ids, logps


def generate(
    model: nn.Module,
    processor: Any,
    prompts: Sequence[PromptInputs],
    n: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 256,
    key: mx.array | None = None,
    top_p: float = 1.0,
    rows: tuple[int, int] | None = None,
    fold_lora: bool = True,
    compiled: bool = True,
    bias: mx.array | None = None,
    compact: bool = True,
) -> list[list[Completion]]:
    """n completions for each prompt, all decoded as one batch of len(prompts) * n rows.

    Returns one list of n Completions per prompt. The same key gives the same samples.
    rows=(first, total): these prompts are a share of a larger batch (data-parallel training):
    their rows are first.. of `total`, and each row samples with the noise it gets in that batch.
    fold_lora: decode with the LoRA updates folded into full-precision base weights
    (models.lora.lora_folded; the same tokens, log-probs equal to float rounding).
    compiled: each decode step is one mx.compile'd graph over fixed-size caches; False runs the
    reference loop (a graph built per token over the keys so far). The same tokens, log-probs
    equal to float rounding (tested).
    bias: the (V,) additive logit bias; None: logit_bias(model, processor) (the banned tokens).
    compact: the compiled decode drops finished rows from its batch as it goes (the same tokens;
    False keeps every row to the end, for A/B timing: benchmarks/bench_rollout_compact.py).
    """
    if fold_lora:
        with lora_folded(model):
            return generate(
                model,
                processor,
                prompts,
                n,
                temperature,
                max_tokens,
                key,
                top_p,
                rows,
                fold_lora=False,
                compiled=compiled,
                bias=bias,
                compact=compact,
            )
    if n < 1 or max_tokens < 1 or not prompts:
        raise ValueError(
            f"generate needs n >= 1, max_tokens >= 1 and prompts; got n={n}, max_tokens={max_tokens}, {len(prompts)} prompts"
        )
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(
            f"temperature must be >= 0 and top_p in (0, 1]; got {temperature}, {top_p}"
        )
    for p in prompts:  # the whole sequence: the prompt and the answer it may grow to
        check_prompt_length(p.length, model, p.name or "(text prompt)", max_tokens)
    key = mx.random.key(0) if key is None else key
    tok = getattr(processor, "tokenizer", processor)
    bias = logit_bias(model, processor) if bias is None else bias
    eos_ids = eos_token_ids(model, processor)
    eos = mx.array(eos_ids, dtype=mx.int32)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
    P = len(prompts)
    lengths = [p.length for p in prompts]
    Lmax = max(lengths)

    # Prefill all prompts once, as one left-padded batch, then tile the caches n times.
    firsts, caches = prefill_batch(model, prompts)
    cache = _tiled_cache(caches, n, max_tokens - 1)
    del caches  # the decode loops take the tiled arrays out of `cache`: no copy stays alive
    keys = mx.random.split(key, max_tokens)
    sample = _sampler(float(temperature), float(top_p), rows)
    y, lp = sample(mx.repeat(firsts, n, axis=0), bias, key=keys[0])
    done = (y[:, None] == eos[None]).any(axis=1)
    mx.async_eval(y, lp, done)
    consts = dict(
        starts=mx.repeat(mx.array([Lmax - L for L in lengths], dtype=mx.int32), n),
        # next text position of each row, t tokens after the prompt: L + delta + t
        base=mx.repeat(mx.array([p.length + p.rope_delta for p in prompts], dtype=mx.int32), n),
        prefix=Lmax,
        keys=keys,
        bias=bias,
        eos=eos,
        pad_id=pad_id,
    )
    if compiled:
        # the plain sampler: the whole step around it is compiled; every row draws the noise of
        # its place in the whole batch, which stays its own when finished rows are dropped
        first, total = rows if rows is not None else (0, P * n)
        step_sample = partial(
            _sample, temperature=float(temperature), top_p=float(top_p), rows=(first, total)
        )
        noise_rows = mx.arange(first, first + P * n, dtype=mx.int32)
        ids, logps = _decode_compiled(
            model,
            cache,
            y,
            lp,
            done,
            max_tokens=max_tokens,
            sample=step_sample,
            compact=compact,
            noise_rows=noise_rows,
            **consts,
        )
    else:
        padded = len(set(lengths)) > 1
        toks, lps = _decode_eager(
            model, cache, y, lp, done, max_tokens=max_tokens, sample=sample, padded=padded, **consts
        )
        ids = np.array(mx.stack(toks, axis=1))
        logps = np.array(mx.stack(lps, axis=1))

    return _completions(ids, logps, n, eos_ids, tok)


def _completions(
    ids: np.ndarray, logps: np.ndarray, n: int, eos_ids: list[int], tok: Any
) -> list[list[Completion]]:
    """The decoded (rows, steps) arrays as n Completions per prompt, each cut after its EOS (the
    columns after it are padding)."""
    eos_set = set(eos_ids)
    out: list[list[Completion]] = []
    for p in range(ids.shape[0] // n):
        group = []
        for r in range(p * n, (p + 1) * n):
            row = ids[r].tolist()
            stop = next((i for i, x in enumerate(row) if x in eos_set), None)
            length = len(row) if stop is None else stop + 1
            body = row[:length] if stop is None else row[:stop]
            group.append(
                Completion(
                    ids=row[:length],
                    logprobs=logps[r, :length].tolist(),
                    text=tok.decode(body, skip_special_tokens=True),
                    truncated=stop is None,
                )
            )
        out.append(group)
    return out
