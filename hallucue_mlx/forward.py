"""The forward pass every caller shares: prompt encoding, the prompt prefill and the log-probs of
completions through a vocabulary head computed in chunks.

Rollouts (`rollout.py`), the GRPO loss and its KL reference (`grpo.py`) and evaluation
(`evaluate.py`) all encode prompts here (`encode_prompt`: chat template, processor, image
features computed once and kept on the `PromptInputs`), embed them (`prompt_embeddings`) and
prefill them (`prefill`, `prefill_batch`). The loss and the reference score completions with
`completion_logprobs`: each prompt runs once and its keys and values are tiled over its
completions, and the vocabulary head runs over chunks of positions (`head_logprobs`), so at most
one chunk's (rows, vocabulary) logits are alive at once, in the forward and in the backward
(each chunk's head is an `mx.checkpoint`, which recomputes the chunk's logits in the backward).

Image/video placeholder and vision start/end tokens are banned (`logit_bias`) while sampling and
in the loss forward, so both see the same distribution. Positions are always passed explicitly:
Qwen2/2.5-VL's language model caches M-RoPE positions between calls and reuses stale ones on a
text-only forward after an image forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_vlm.models.cache import ConcatenateKVCache, create_causal_mask

from hallucue_mlx.data.item import Item
from hallucue_mlx.models import arch
from hallucue_mlx.models.arch import head_chunk_rows, lm_head
from hallucue_mlx.prompts import build_prompt

# Finite, so entropy terms p*log p stay 0 (not NaN) on banned tokens.
BANNED_LOGIT = -1e9


@dataclass
class PromptInputs:
    """One encoded prompt: token ids with image placeholders expanded, explicit M-RoPE positions and
    the image features (computed once, reused by the rollout and the loss forward)."""

    input_ids: mx.array  # (L,) int32
    position_ids: mx.array  # (3, 1, L) (Qwen's M-RoPE; Idefics3's RoPE follows the cache instead)
    rope_delta: int  # the next text position after the prompt is L + rope_delta
    image_features: mx.array | None  # (n_image_tokens, hidden) or None for a text-only prompt
    text: str = ""
    pixel_values: mx.array | None = None
    image_grid_thw: mx.array | None = None
    name: str = ""  # the item's id, for messages

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


# ---------------------------------------------------------------- model plumbing


def banned_token_ids(model: nn.Module, processor: Any) -> list[int]:
    """Placeholder tokens that must never be sampled, plus ids past the tokenizer's vocabulary."""
    cfg = model.config
    ids = {
        getattr(cfg, name, None)
        for name in (
            "image_token_id",
            "video_token_id",
            "vision_start_token_id",
            "vision_end_token_id",
        )
    }
    tok = getattr(processor, "tokenizer", processor)
    pad = (
        tok.convert_tokens_to_ids("<|vision_pad|>") if "<|vision_pad|>" in tok.get_vocab() else None
    )
    ids.add(pad)
    vocab = arch.vocab_size(model)
    ids |= set(range(len(tok), vocab))
    return sorted(i for i in ids if isinstance(i, int) and 0 <= i < vocab)


def logit_bias(model: nn.Module, processor: Any) -> mx.array:
    """(V,) additive bias: BANNED_LOGIT on banned ids, 0 elsewhere."""
    vocab = arch.vocab_size(model)
    bias = np.zeros(vocab, np.float32)
    bias[banned_token_ids(model, processor)] = BANNED_LOGIT
    return mx.array(bias)


def prompt_embeddings(model: nn.Module, prompt: PromptInputs) -> mx.array:
    """(1, L, D) input embeddings with the image features at the image tokens: the cached,
    frozen ones, or recomputed when LoRA adapts the vision tower."""
    ids = prompt.input_ids
    emb = arch.text_stack(model).embed_tokens(ids[None])
    if prompt.image_features is None:
        return emb
    is_img = ids == arch.image_token_id(model)
    idx = mx.maximum(mx.cumsum(is_img.astype(mx.int32)) - 1, 0)
    lora = getattr(model, "_hallucue_lora", None)
    if lora is not None and lora[0].train_vision and prompt.pixel_values is not None:
        # LoRA on the vision tower (train.lora_vision): the features are recomputed from the
        # pixels, so the loss reaches the tower and each pass sees the current adapter
        feats = model.vision_tower(
            prompt.pixel_values, prompt.image_grid_thw, output_hidden_states=False
        )
    else:
        feats = mx.stop_gradient(prompt.image_features)
    feats = feats.astype(emb.dtype)[idx]
    return mx.where(is_img[None, :, None], feats[None], emb)


def prefill(model: nn.Module, prompt: PromptInputs) -> tuple[mx.array, list[ConcatenateKVCache]]:
    """Run the prompt once; returns the last position's logits (1, V) and the filled KV cache."""
    cache = [ConcatenateKVCache() for _ in arch.text_stack(model).layers]
    h = arch.text_forward(
        model,
        None,
        embeds=prompt_embeddings(model, prompt),
        cache=cache,
        positions=prompt.position_ids,
    )
    return lm_head(model, h[:, -1:, :])[:, 0], cache


def prefill_batch(
    model: nn.Module, prompts: Sequence[PromptInputs]
) -> tuple[mx.array, list[ConcatenateKVCache]]:
    """Prefill several prompts as one left-padded batch: logits (P, V) and a (P, ..., Lmax) cache.

    One batched forward instead of one per prompt: far better matrix shapes on every backend
    (measured 2-3x faster evaluation on the CPU). Pad positions attend only to themselves, so
    their (unused) keys and values stay finite; real tokens never attend to them.
    """
    if len(prompts) == 1:
        return prefill(model, prompts[0])
    lengths = [p.length for p in prompts]
    Lmax = max(lengths)
    embs, poss = [], []
    for p in prompts:
        e, pos, pad = prompt_embeddings(model, p), p.position_ids, Lmax - p.length
        if pad:
            e = mx.concatenate([mx.zeros((1, pad, e.shape[2]), e.dtype), e], axis=1)
            pos = mx.concatenate([mx.zeros((3, 1, pad), pos.dtype), pos], axis=2)
        embs.append(e)
        poss.append(pos)
    starts = mx.array([Lmax - L for L in lengths])[:, None, None]
    q, k = mx.arange(Lmax)[:, None], mx.arange(Lmax)[None, :]
    mask = ((k <= q) & (k >= starts)) | (k == q)
    cache = [ConcatenateKVCache() for _ in arch.text_stack(model).layers]
    h = arch.text_forward(
        model,
        None,
        embeds=mx.concatenate(embs, axis=0),
        mask=mask[:, None],
        cache=cache,
        positions=mx.concatenate(poss, axis=1),
    )
    return lm_head(model, h[:, -1:, :])[:, 0], cache


# ---------------------------------------------------------------- encoding


def context_limit(model: Any) -> int | None:
    """The model's context in tokens (max_position_embeddings of its text model), if stated."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        n = cfg.get("max_position_embeddings") if isinstance(cfg, dict) else None
        n = n if n is not None else getattr(cfg, "max_position_embeddings", None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return None


def check_prompt_length(n_tokens: int, model: Any, name: str, new_tokens: int = 1) -> None:
    """Refuse a prompt the model's context cannot hold together with the `new_tokens` answer
    tokens that will follow it (the whole sequence a rollout holds), before any forward pass:
    past the context the position tables are read out of range (a crash, not an error)."""
    limit = context_limit(model)
    if limit is not None and n_tokens + max(new_tokens, 1) > limit:
        answer = (
            f" and up to {new_tokens} answer tokens follow it (max_tokens, or "
            "train.max_completion_length)"
            if new_tokens > 1
            else ""
        )
        raise ValueError(
            f"item {name}: its prompt is {n_tokens} tokens{answer}, but the model's context "
            f"holds {limit} (max_position_embeddings) with room for the answer; shorten the "
            "question"
            + (", lower the answer's token limit" if new_tokens > 1 else "")
            + " or drop the item."
        )


def check_image_size(image: Any, limit: int | None, name: str) -> None:
    """Refuse an image larger than `limit` pixels (model.max_image_pixels) before the processor
    and the vision tower see it: one huge photo can take a laptop's whole memory."""
    w, h = image.size
    if limit is not None and w * h > limit:
        raise ValueError(
            f"item {name}: its image is {w}x{h} ({w * h / 1e6:.1f} megapixels), over "
            f"model.max_image_pixels ({limit}). Downscale the image, drop the item, or raise "
            "model.max_image_pixels if your memory allows it (model.max_pixels sets how far the "
            "processor shrinks the images it accepts; `hallucue-mlx plan` estimates the memory)."
        )


def chat_text(processor: Any, model: nn.Module, text: str, num_images: int) -> str:
    """The chat-formatted prompt, rendered by the checkpoint's chat template, with the image(s)
    before the question in the user turn for every family: where the published model cards
    (Qwen2-VL, Qwen2.5-VL, SmolVLM), transformers' processors in their examples and EasyR1
    (the `<image>` first in the problem) put it. mlx-vlm 0.7.10's `apply_chat_template` puts
    Qwen2-VL's image after the text, a prompt that model's users never send."""
    from mlx_vlm.prompt_utils import apply_chat_template, get_chat_template

    messages = apply_chat_template(
        processor, model.config, text, num_images=num_images, return_messages=True
    )
    for message in messages:
        if isinstance(message.get("content"), list):  # stable: the text parts keep their order
            message["content"].sort(key=lambda part: part.get("type") != "image")
    return get_chat_template(processor, messages, add_generation_prompt=True)


def encode_prompt(
    processor: Any,
    model: nn.Module,
    item_or_text: Item | str,
    image: Any = None,
    template: str = "easyr1",
) -> PromptInputs:
    """Chat template + processor for one prompt; computes the image features (lazily, once).

    An Item brings its own image (None: a text-only prompt) and its prompt text via
    prompts.build_prompt(item, template); a plain string is used as the user text as is.
    """
    from mlx_vlm.utils import prepare_inputs

    arch.family(model)  # refuses a model type the rollout cannot drive
    if isinstance(item_or_text, Item):
        text = build_prompt(item_or_text, template)
        image = item_or_text.image if image is None else image
    else:
        text = item_or_text
    images = [image] if image is not None else []
    name = item_or_text.id if isinstance(item_or_text, Item) else "(text prompt)"
    if image is not None:
        check_image_size(image, getattr(processor, "max_image_pixels", None), name)
    chat = chat_text(processor, model, text, len(images))
    if images:
        try:
            inputs = prepare_inputs(
                processor,
                images=images,
                prompts=[chat],
                image_token_index=model.config.image_token_id,
            )
        except ValueError as err:  # e.g. Qwen's limit on the aspect ratio (200:1)
            w, h = image.size
            raise ValueError(
                f"item {name}: the model's processor cannot encode its {w}x{h} image ({err}). "
                "Pad or crop the image to a less extreme shape, or drop the item."
            ) from err
    else:
        inputs = prepare_inputs(processor, prompts=[chat])
    ids = inputs["input_ids"][0].astype(mx.int32)
    check_prompt_length(int(ids.shape[0]), model, name)
    pixel_values = inputs.get("pixel_values")
    grid = inputs.get("image_grid_thw")
    if pixel_values is not None:
        feats, pos, delta, pixel_values = arch.image_features(model, ids, inputs)
        n_img = int((ids == arch.image_token_id(model)).sum().item())
        if feats.shape[0] != n_img:
            raise ValueError(
                f"prompt has {n_img} image tokens but the vision tower gave {feats.shape[0]} features"
            )
        # computed now, image by image: left lazy, the vision passes of a batch of prompts ran
        # together in the prefill's graph (measured: a third of each one's memory at once)
        feats = mx.stop_gradient(feats)
        mx.eval(feats)
    else:
        pos = arch.text_positions(int(ids.shape[0]))
        delta, feats = 0, None
    return PromptInputs(
        input_ids=ids,
        position_ids=pos.astype(mx.int32),
        rope_delta=delta,
        image_features=feats,
        text=text,
        pixel_values=pixel_values,
        image_grid_thw=grid,
        name=name,
    )


# ---------------------------------------------------------------- log-probs of completions


def token_logprobs(
    logits: mx.array, ids: mx.array, with_entropy: bool = False
) -> tuple[mx.array, mx.array | None]:
    """log softmax(logits) at `ids` (..., V) -> (...), and optionally the entropy (no gradient).

    One exp over the vocabulary serves the log-probs, the entropy and the backward pass (exp's
    derivative is its output), where logits - logsumexp(logits) plus exp(log-probs) for the
    entropy take three. The vocabulary-wide passes are a large share of the loss on small
    models, and on real ones (150k-token vocabularies) each is a (rows, T, V) tensor."""
    z = logits - mx.stop_gradient(logits.max(axis=-1, keepdims=True))  # exact: lp is shift-free
    e = mx.exp(z)
    s = e.sum(axis=-1)
    log_s = mx.log(s)
    lp = mx.take_along_axis(z, ids[..., None], axis=-1)[..., 0] - log_s
    if not with_entropy:
        return lp, None
    # H = -sum p log p = log s - sum p z, with p = e / s
    ent = mx.stop_gradient(log_s - (e * z).sum(axis=-1) / s)
    return lp, ent


def _head_modules(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The final norm and the module holding the vocabulary projection (the tied embedding)."""
    inner = arch.text_stack(model)
    lm = model.language_model
    head = lm.lm_head if hasattr(lm, "lm_head") else inner.embed_tokens
    return inner.norm, head


def head_logprobs(
    model: nn.Module,
    h: mx.array,
    ids: mx.array,
    bias: mx.array,
    temperature: float = 1.0,
    with_entropy: bool = False,
    rows: int | None = None,
) -> tuple[mx.array, mx.array | None]:
    """Log-probs (and entropies) of `ids` (N,) from final hidden states h (N, D), not yet
    normed, through the vocabulary head in chunks of `rows` positions (None: the vocabulary's
    `head_chunk_rows`; 0: all at once). Each chunk's head is an mx.checkpoint: its forward keeps
    only the chunk's log-probs, its backward recomputes the chunk's logits, so at most one
    chunk's (rows, V) arrays are alive, forward and backward. Values and gradients equal the
    unchunked head's (tested)."""
    t = temperature if temperature > 0 else 1.0
    norm, head = _head_modules(model)

    def run(x: mx.array, tok: mx.array) -> tuple[mx.array, mx.array | None]:
        logits = lm_head(model, norm(x))
        return token_logprobs((logits.astype(mx.float32) + bias) / t, tok, with_entropy)

    n = h.shape[0]
    rows = head_chunk_rows(bias.shape[-1]) if rows is None else rows
    if rows <= 0 or n <= rows:
        return run(h, ids)

    def inner(params: dict, x: mx.array, *, tok: mx.array) -> list[mx.array]:
        norm.update(params["norm"])
        head.update(params["head"])
        lp, ent = run(x, tok)
        return [lp] if ent is None else [lp, ent]

    params = {"norm": norm.trainable_parameters(), "head": head.trainable_parameters()}
    # the chunk's token ids are a constant of its function, not an input: no gradient to them
    parts = [
        mx.checkpoint(partial(inner, tok=ids[i : i + rows]))(params, h[i : i + rows])
        for i in range(0, n, rows)
    ]
    lp = mx.concatenate([p[0] for p in parts])
    return lp, (mx.concatenate([p[1] for p in parts]) if with_entropy else None)


def _shared_prefix_layer(call, hp, hc, pos_p, pos_c, mask_c, G):
    """One decoder layer (`call(x, mask, cache, positions)`) over a prompt (batch 1) and its G
    continuations, which attend to the prompt's keys/values tiled G times. The KV cache lives
    only inside this call, so the call can be wrapped in mx.checkpoint."""
    c = ConcatenateKVCache()
    hp = call(hp, "causal", c, pos_p)
    if hc is None:
        return hp, None
    c.keys, c.values = mx.repeat(c.keys, G, axis=0), mx.repeat(c.values, G, axis=0)
    return hp, call(hc, mask_c, c, pos_c)


def _checkpointed(model, layer):
    call = partial(arch.decoder_layer, model, layer)

    def inner(params, *args):
        layer.update(params)
        return _shared_prefix_layer(call, *args)

    ck = mx.checkpoint(inner)
    return lambda *args: ck(layer.trainable_parameters(), *args)


def _group_logprobs(
    model: nn.Module,
    hp: mx.array,
    hc: mx.array | None,
    ids: mx.array,
    bias: mx.array,
    t: float,
    with_entropy: bool,
    rows: int | None,
) -> tuple[mx.array, mx.array | None]:
    """One group's (G, T) log-probs from the prompt's last hidden state (predicting the first
    completion token) and the completions' hidden states."""
    G, T = ids.shape
    rows = head_chunk_rows(bias.shape[-1]) if rows is None else rows
    if rows <= 0 or G * T <= rows:  # one piece: the head of the prompt's last position once
        inner = arch.text_stack(model)
        first = lm_head(model, inner.norm(hp[:, -1:]))  # predicts the first completion token
        logits = mx.repeat(first, G, axis=0)
        if hc is not None:
            logits = mx.concatenate([logits, lm_head(model, inner.norm(hc))], axis=1)
        return token_logprobs((logits.astype(mx.float32) + bias) / t, ids, with_entropy)
    h = mx.repeat(hp[:, -1:], G, axis=0)
    if hc is not None:
        h = mx.concatenate([h, hc], axis=1)
    lp, ent = head_logprobs(
        model, h.reshape(G * T, -1), ids.reshape(-1), bias, t, with_entropy, rows
    )
    return lp.reshape(G, T), (ent.reshape(G, T) if with_entropy else None)


def completion_logprobs(
    model: nn.Module,
    prompts: list[PromptInputs],
    completion_ids: mx.array,
    bias: mx.array,
    temperature: float = 1.0,
    with_entropy: bool = False,
    checkpoint: bool = False,
    group_lengths: list[int] | None = None,
    head_rows: int | None = None,
) -> tuple[mx.array, mx.array | None]:
    """Per-token log-probs (B, T) of right-padded completions, B = len(prompts) * G, rows grouped by
    prompt. Each prompt runs once (batch 1, reusing its cached image features) and its keys/values
    are tiled over its G completions, so the prompt is not recomputed G times. Gradients flow
    through both. checkpoint=True recomputes each layer in the backward pass (less memory).
    Optionally the per-token entropy (no gradient).

    group_lengths: the longest completion of each prompt's group; a group then runs only that
    many columns (the rest is padding; its log-probs and entropy come back as 0). Without it
    every group runs all T columns. head_rows: positions per chunk of the vocabulary head
    (`head_logprobs`; None: the vocabulary's default, 0: unchunked)."""
    inner = arch.text_stack(model)
    B, T_all = completion_ids.shape
    G = B // len(prompts)
    t = temperature if temperature > 0 else 1.0
    out_lp, out_ent = [], []
    for p, prompt in enumerate(prompts):
        T = T_all if group_lengths is None else max(1, min(T_all, group_lengths[p]))
        ids = completion_ids[p * G : (p + 1) * G, :T]
        L = prompt.length
        hp = prompt_embeddings(model, prompt)
        hc = pos_c = mask_c = None
        if T > 1:
            hc = inner.embed_tokens(ids[:, :-1])
            pos_c = arch.text_positions(T - 1, G, L + prompt.rope_delta)
            mask_c = create_causal_mask(T - 1, offset=L)
        for layer in inner.layers:
            run = (
                _checkpointed(model, layer)
                if checkpoint
                else partial(_shared_prefix_layer, partial(arch.decoder_layer, model, layer))
            )
            hp, hc = run(hp, hc, prompt.position_ids, pos_c, mask_c, G)
        lp, ent = _group_logprobs(model, hp, hc, ids, bias, t, with_entropy, head_rows)
        pad = [(0, 0), (0, T_all - T)]
        out_lp.append(lp if T == T_all else mx.pad(lp, pad))
        if with_entropy:
            out_ent.append(ent if T == T_all else mx.pad(ent, pad))
    logps = mx.concatenate(out_lp, axis=0)
    return logps, (mx.concatenate(out_ent, axis=0) if with_entropy else None)
