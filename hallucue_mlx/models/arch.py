"""What differs between the supported model families, in one place.

The rollout and the loss drive the language model themselves (a prompt prefilled once, its keys
and values shared by G completions), so they need a few things mlx-vlm's classes lay out
differently per family:

- Qwen2-VL / Qwen2.5-VL: `language_model.model.{embed_tokens, layers, norm}`, decoder layers that
  take explicit M-RoPE position ids (3, B, L), an LM head tied to the embedding or
  `language_model.lm_head`, images as patches with a (t, h, w) grid.
- Idefics3 (SmolVLM): `language_model.{embed_tokens, layers, norm, lm_head}`, a Llama stack whose
  RoPE position is its KV cache's offset (1-D and relative, so a left-padded row sees the same
  distances as an unpadded one), images as 512-px tiles plus a global view.

Everything else in the package talks to a model through these functions.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "idefics3")
QWEN = ("qwen2_5_vl", "qwen2_vl")
# mlx-vlm model_type -> family (SmolVLM2's "smolvlm" is Idefics3 inside)
MODEL_TYPES = {
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen2_vl": "qwen2_vl",
    "idefics3": "idefics3",
    "smolvlm": "idefics3",
}


def family(model: nn.Module) -> str:
    """The model's family (from its config's model_type); refuses one the rollout cannot drive."""
    mt = getattr(model.config, "model_type", "")
    if mt not in MODEL_TYPES:
        raise ValueError(
            f"hallucue-mlx drives model types {tuple(MODEL_TYPES)}, got {mt!r}; use a "
            "Qwen2-VL, Qwen2.5-VL or SmolVLM (Idefics3) checkpoint"
        )
    return MODEL_TYPES[mt]


def text_stack(model: nn.Module) -> nn.Module:
    """The decoder stack: a module with embed_tokens, layers and norm."""
    lm = model.language_model
    return lm.model if family(model) in QWEN else lm


def layer_prefix(model: nn.Module) -> str:
    """Module path of the decoder layers from the model root (LoRA names and adapters use it)."""
    return "language_model.model.layers" if family(model) in QWEN else "language_model.layers"


def vocab_size(model: nn.Module) -> int:
    """Rows of the LM head (the embedding may have more than the tokenizer knows)."""
    lm = model.language_model
    args = getattr(lm, "args", None) or lm.config
    return int(args.vocab_size)


# The loss's vocabulary head runs over chunks of at most this many (position x vocabulary)
# float32 logits (`forward.head_logprobs`): at Qwen's 151,936-token vocabulary 220 positions,
# 134 MB a copy. `plan` predicts with the same numbers.
HEAD_CHUNK_ELEMENTS = 2**25


def head_chunk_rows(vocab: int, elements: int = HEAD_CHUNK_ELEMENTS) -> int:
    """Positions per chunk of the vocabulary head for this vocabulary (at least 16)."""
    return max(16, elements // max(vocab, 1))


def lm_head(model: nn.Module, h: mx.array) -> mx.array:
    """Logits from final hidden states (already normed)."""
    lm = model.language_model
    if family(model) in QWEN and lm.args.tie_word_embeddings:
        return lm.model.embed_tokens.as_linear(h)
    return lm.lm_head(h)


def decoder_layer(
    model: nn.Module, layer: nn.Module, x: mx.array, mask: Any, cache: Any, positions: mx.array
) -> mx.array:
    """One decoder layer. Qwen takes the M-RoPE positions; Idefics3's Llama layer takes its
    position from the cache's offset, so `positions` is unused there."""
    if family(model) in QWEN:
        return layer(x, mask, cache, positions)
    return layer(x, mask, cache)


def text_forward(
    model: nn.Module,
    inputs: mx.array | None,
    *,
    embeds: mx.array | None = None,
    mask: Any = None,
    cache: list | None = None,
    positions: mx.array | None = None,
) -> mx.array:
    """Final (normed) hidden states of the decoder stack for token ids or input embeddings."""
    if family(model) in QWEN:
        # positions are always explicit: Qwen's language model caches M-RoPE positions between
        # calls and reuses stale ones on a text-only forward after an image forward
        return model.language_model.model(
            inputs, inputs_embeds=embeds, mask=mask, cache=cache, position_ids=positions
        )
    from mlx_vlm.models.base import create_attention_mask

    stack = model.language_model
    h = stack.embed_tokens(inputs) if embeds is None else embeds.astype(stack.norm.weight.dtype)
    cache = cache if cache is not None else [None] * len(stack.layers)
    if mask is None:
        mask = create_attention_mask(h, cache)
    for layer, c in zip(stack.layers, cache):
        h = layer(h, mask, c)
    return stack.norm(h)


def image_token_id(model: nn.Module) -> int:
    return int(model.config.image_token_id)


def image_features(
    model: nn.Module, ids: mx.array, inputs: dict[str, Any]
) -> tuple[mx.array, mx.array, int, mx.array]:
    """(features (n_image_tokens, D), positions (3, 1, L), rope delta, pixel values as the vision
    tower got them) for one prompt's token ids and the processor's outputs."""
    pixel_values = inputs["pixel_values"]
    if family(model) in QWEN:
        grid = inputs.get("image_grid_thw")
        pos, delta = model.language_model.get_rope_index(ids[None], grid, None, None)
        vt = model.vision_tower
        pixel_values = pixel_values.astype(vt.patch_embed.proj.weight.dtype)
        feats = vt(pixel_values, grid, output_hidden_states=False)
        return feats, pos, int(delta.reshape(-1)[0].item()), pixel_values
    # Idefics3: mlx-vlm's own embedding code (tiles, padding tiles dropped, pixel shuffle,
    # connector); the features are read back at the image tokens
    pixel_values = pixel_values.astype(model.vision_model.embeddings.patch_embedding.weight.dtype)
    merged = model.get_input_embeddings(
        ids[None], pixel_values, pixel_attention_mask=inputs.get("pixel_attention_mask")
    ).inputs_embeds[0]
    at = mx.array([i for i, t in enumerate(ids.tolist()) if t == image_token_id(model)])
    feats = merged[at] if at.size else merged[:0]
    return feats, text_positions(int(ids.shape[0])), 0, pixel_values


def text_positions(length: int, batch: int = 1, start: int = 0) -> mx.array:
    """(3, batch, length) positions of plain text (all three M-RoPE axes equal)."""
    return mx.broadcast_to((mx.arange(length) + start)[None, None], (3, batch, length))


def pixels_seen(model: nn.Module, inputs: dict[str, Any]) -> int:
    """Pixels the vision tower will see for one prompt's processor outputs (after the processor's
    resizing and tiling): what its memory grows with."""
    if family(model) in QWEN:
        grid = inputs.get("image_grid_thw")
        patch = int(model.config.vision_config.patch_size)
        return int(sum(int(h) * int(w) for _, h, w in grid.tolist())) * patch * patch
    pv = inputs["pixel_values"]  # (batch, tiles, channels, height, width)
    return int(pv.shape[0] * pv.shape[1] * pv.shape[3] * pv.shape[4])
