#!/usr/bin/env python
"""Do our MLX code path and transformers compute the same model? Token ids, image grid, pixels, logits.

For each family: a random-weight checkpoint at the published widths and vocabulary but reduced
depth (fp32), written a second time in Hugging Face layout (`models.hf_layout.to_hf_layout`),
loaded by our `load_model` and by transformers (the family's class, eager attention, fp32).
Each prompt (one question with a 448x448 image, with a 336x504 portrait image, and text only)
goes through each side's own chat template and processor: ours is `forward.encode_prompt`
(mlx-vlm's template and processor) and our forward with explicit positions; theirs is the
checkpoint's chat template, transformers' processor and `model(...)`. Compared:

  1. prompt token ids (identical), 2. image grid (Qwen image_grid_thw; Idefics3 the pixel_values
  shape and image-token count; identical), 3. pixel_values (max |diff|), 4. logits over the whole
  prompt plus a fixed 8-token continuation, scored by our loss path `forward.completion_logprobs`
  (max |diff| <= --tol, default 1e-4; relative = max |diff| / max |logit|).

Prints one row per family x prompt and exits 1 if any row fails. Needs the `parity` extra
(torch, transformers; no torchvision).

    python -m hallucue_mlx.fastblas python scripts/parity_transformers.py
    python -m hallucue_mlx.fastblas python scripts/parity_transformers.py --family qwen2-vl-2b
    python scripts/parity_transformers.py --tiny     # tiny widths: the pipeline in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "How many red circles are in the figure? Think step by step, then give the number."
CONTINUATION = 8  # tokens scored after the prompt (our loss path: grpo.completion_logprobs)
IMAGES = {"square 448x448": (448, 448), "portrait 336x504": (336, 504), "text only": None}


@dataclass
class Side:
    """What one implementation computed for one prompt (numpy arrays)."""

    ids: object
    grid: tuple
    pixels: object  # None for a text-only prompt
    logits: object  # (L, V) over the prompt
    cont_logps: object  # (CONTINUATION,) log-probs of the continuation tokens
    image_tokens: int = 0


@dataclass
class Row:
    name: str
    case: str
    tokens_equal: bool
    grid_equal: bool
    pixel_diff: float
    logit_diff: float
    logit_rel: float
    logp_diff: float
    tol: float
    length: int = 0
    image_tokens: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.tokens_equal
            and self.grid_equal
            and self.pixel_diff <= self.tol
            and self.logit_diff <= self.tol
            and self.logp_diff <= self.tol
        )


def make_image(size: tuple[int, int], seed: int = 0):
    """A deterministic RGB picture with structure at every scale: gradients, discs and noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    base = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(10, min(w, h) // 5)
        draw.ellipse(
            [cx - r, cy - r, cx + r, cy + r], fill=tuple(int(c) for c in rng.integers(0, 256, 3))
        )
    return img


def family_of(name: str) -> str:
    from hallucue_mlx.models.shapes import SHAPES

    return SHAPES[name].family


def build_checkpoint(
    name: str, out: Path, text_layers: int, vision_layers: int, tiny: bool
) -> Path:
    """The fp32 MLX checkpoint of `name` at reduced depth (tiny=True: tiny widths, for a quick check)."""
    if tiny:
        from hallucue_mlx.models.tiny import build_tiny_random

        family = family_of(name)
        side = 448 if family == "idefics3" else 112
        return build_tiny_random(
            out,
            family,
            text_hidden=128,
            text_layers=text_layers,
            text_heads=4,
            kv_heads=2,
            vision_hidden=64,
            vision_depth=vision_layers,
            vision_heads=4,
            image_pixels=(side * side, 1024 * 1024),
        )
    from hallucue_mlx.models.shapes import build_real_shape

    return build_real_shape(
        name, out, text_layers=text_layers, vision_layers=vision_layers, dtype="float32"
    )


# ---------------------------------------------------------------- our side


def _prompt_logits(model, prompt):
    """(L, V) logits over the prompt: our prompt embeddings (cached image features spliced in) and
    the decoder stack with the prompt's explicit positions, as `forward.prefill` runs it."""
    from hallucue_mlx.forward import prompt_embeddings
    from hallucue_mlx.models import arch

    h = arch.text_forward(
        model, None, embeds=prompt_embeddings(model, prompt), positions=prompt.position_ids
    )
    return arch.lm_head(model, h)[0]


def ours(model, processor, text: str, image, cont_ids: list[int]) -> Side:
    import mlx.core as mx
    import numpy as np

    from hallucue_mlx.forward import completion_logprobs, encode_prompt

    p = encode_prompt(processor, model, text, image)
    logits = _prompt_logits(model, p)
    vocab = logits.shape[-1]
    logps, _ = completion_logprobs(model, [p], mx.array([cont_ids], mx.int32), mx.zeros((vocab,)))
    mx.eval(logits, logps)
    grid = (
        () if p.image_grid_thw is None else tuple(np.array(p.image_grid_thw).reshape(-1).tolist())
    )
    ids = np.array(p.input_ids)
    return Side(
        ids=ids,
        grid=grid,
        pixels=None if p.pixel_values is None else np.array(p.pixel_values),
        logits=np.array(logits),
        cont_logps=np.array(logps[0]),
        image_tokens=int((ids == model.config.image_token_id).sum()),
    )


# ---------------------------------------------------------------- transformers' side


def hf_processor(hf_dir: Path, family: str):
    """transformers' processor for the checkpoint, built from its files without AutoProcessor
    (which also loads Qwen's video processor, and that needs torchvision)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    image_processor = AutoImageProcessor.from_pretrained(hf_dir)
    template = tok.chat_template
    chat_file = hf_dir / "chat_template.json"
    if template is None and chat_file.is_file():
        template = json.loads(chat_file.read_text())["chat_template"]
    if family == "idefics3":
        from transformers import Idefics3Processor

        extra = json.loads((hf_dir / "processor_config.json").read_text())
        return Idefics3Processor(
            image_processor, tok, image_seq_len=extra["image_seq_len"], chat_template=template
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

    base = Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen2VLProcessor

    class ImagesOnly(base):
        # no video processor: transformers' placeholder class for it needs torchvision
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None and argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    return ImagesOnly(image_processor=image_processor, tokenizer=tok, chat_template=template)


def theirs(hf_model, hf_proc, family: str, text: str, image, cont_ids: list[int]) -> Side:
    import torch

    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
    chat = hf_proc.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    inputs = hf_proc(
        text=[chat], images=[[image]] if image is not None else None, return_tensors="pt"
    )
    ids = inputs["input_ids"]
    L = ids.shape[1]
    full = torch.cat([ids, torch.tensor([cont_ids], dtype=ids.dtype)], dim=1)
    kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in kwargs:  # Qwen's M-RoPE positions are computed from it
        types = kwargs["mm_token_type_ids"]
        kwargs["mm_token_type_ids"] = torch.cat([types, torch.zeros_like(full[:, L:])], dim=1)
    with torch.no_grad():
        logits = hf_model(input_ids=full, attention_mask=torch.ones_like(full), **kwargs).logits[0]
    logp = torch.log_softmax(logits[L - 1 : L - 1 + len(cont_ids)].double(), dim=-1)
    cont = logp[torch.arange(len(cont_ids)), torch.tensor(cont_ids)]
    pixels = inputs.get("pixel_values")
    if family == "idefics3":
        grid = () if pixels is None else tuple(pixels.shape)
    else:
        g = inputs.get("image_grid_thw")
        grid = () if g is None else tuple(g.reshape(-1).tolist())
    ids_np = ids[0].numpy()
    token = hf_model.config.image_token_id
    return Side(
        ids=ids_np,
        grid=grid,
        pixels=None if pixels is None else pixels.numpy(),
        logits=logits[:L].numpy(),
        cont_logps=cont.float().numpy(),
        image_tokens=int((ids_np == token).sum()),
    )


# ---------------------------------------------------------------- comparison


def compare(name: str, case: str, a: Side, b: Side, tol: float, family: str | None = None) -> Row:
    """Row for one prompt: our side `a` against transformers' `b`. `family` is needed only when
    `name` is not one of the published shapes (e.g. hallucue-tiny in the GRPO benchmark)."""
    import numpy as np

    family = family or family_of(name)
    notes = []
    tokens_equal = a.ids.shape == b.ids.shape and bool((a.ids == b.ids).all())
    if not tokens_equal:
        first = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids)) if x != y), None)
        notes.append(
            f"ids differ: {len(a.ids)} vs {len(b.ids)} tokens, first difference at {first}"
        )
    if family == "idefics3":
        # ours keeps the processor's pixel layout; compare the tile count and image tokens
        grid_a = (a.pixels.shape if a.pixels is not None else (), a.image_tokens)
        grid_b = (b.grid, b.image_tokens)
        grid_equal = (
            a.image_tokens == b.image_tokens
            and (a.pixels is None) == (b.pixels is None)
            and (a.pixels is None or a.pixels.size == b.pixels.size)
        )
    else:
        grid_a, grid_b = a.grid, b.grid
        grid_equal = a.grid == b.grid
    if not grid_equal:
        notes.append(f"grid {grid_a} vs {grid_b}")
    pixel_diff = 0.0
    if a.pixels is not None and b.pixels is not None:
        pa, pb = a.pixels, b.pixels
        if pa.shape != pb.shape and pa.size == pb.size:
            # channels-last (MLX) vs channels-first (PyTorch) images
            pa = np.moveaxis(pa.reshape(pb.shape[:-3] + pb.shape[-2:] + pb.shape[-3:-2]), -1, -3)
        pixel_diff = float(np.abs(pa - pb).max()) if pa.shape == pb.shape else float("inf")
    elif (a.pixels is None) != (b.pixels is None):
        pixel_diff = float("inf")
    if tokens_equal:
        diff = np.abs(a.logits.astype(np.float64) - b.logits.astype(np.float64))
        logit_diff = float(diff.max())
        logit_rel = logit_diff / max(float(np.abs(b.logits).max()), 1e-30)
        logp_diff = float(np.abs(a.cont_logps - b.cont_logps).max())
    else:
        logit_diff = logit_rel = logp_diff = float("inf")
    return Row(
        name,
        case,
        tokens_equal,
        grid_equal,
        pixel_diff,
        logit_diff,
        logit_rel,
        logp_diff,
        tol,
        len(a.ids),
        a.image_tokens,
        notes,
    )


def _log(name: str, what: str, since: float) -> float:
    now = time.perf_counter()
    print(f"{name}: {what} {now - since:.1f} s", file=sys.stderr, flush=True)
    return now


def _continuation(tok, seed: int = 0) -> list[int]:
    """CONTINUATION token ids drawn from the ordinary vocabulary (never an image or control token)."""
    import numpy as np

    special = np.array(sorted(getattr(tok, "added_tokens_decoder", {})), dtype=np.int64)
    plain = np.setdiff1d(np.arange(len(tok)), special)
    return [int(i) for i in np.random.default_rng(seed).choice(plain, CONTINUATION, replace=False)]


def run_family(name: str, root: Path, args) -> list[Row]:
    """Build, convert, load both sides and compare every prompt of IMAGES for one model."""
    import torch
    from transformers import AutoModelForImageTextToText

    from hallucue_mlx.models import load_model
    from hallucue_mlx.models.hf_layout import to_hf_layout

    t = time.perf_counter()
    shutil.rmtree(root / name, ignore_errors=True)
    mlx_dir = build_checkpoint(
        name, root / name / "mlx", args.text_layers, args.vision_layers, args.tiny
    )
    t = _log(name, "build", t)
    hf_dir = to_hf_layout(mlx_dir, root / name / "hf")
    t = _log(name, "Hugging Face layout", t)
    family = family_of(name)
    model, processor = load_model(mlx_dir, dtype="float32")
    hf_model, info = AutoModelForImageTextToText.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise RuntimeError(
            f"{name}: transformers did not load the converted weights exactly: {bad}"
        )
    hf_model.eval()
    hf_proc = hf_processor(hf_dir, family)
    t = _log(name, "load both", t)
    cont_ids = _continuation(getattr(processor, "tokenizer", processor))
    rows = []
    for case, size in IMAGES.items():
        image = None if size is None else make_image(size)
        a = ours(model, processor, PROMPT, image, cont_ids)
        t = _log(name, f"{case}: ours", t)
        b = theirs(hf_model, hf_proc, family, PROMPT, image, cont_ids)
        t = _log(name, f"{case}: transformers", t)
        rows.append(compare(name, case, a, b, args.tol))
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (docs/design.md quotes it), then any notes on failures."""
    cols = (
        "model | prompt | prompt tokens (image) | tokens equal | grid equal | max abs pixel diff"
        " | max abs logit diff | relative | max abs log-prob diff | OK"
    )
    lines = [f"| {cols} |", "|" + "---|" * (cols.count("|") + 1)]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.case} | {r.length} ({r.image_tokens}) | "
            f"{'yes' if r.tokens_equal else 'NO'} | {'yes' if r.grid_equal else 'NO'} | "
            f"{r.pixel_diff:.1e} | {r.logit_diff:.1e} | {r.logit_rel:.1e} | {r.logp_diff:.1e} | "
            f"{'OK' if r.ok else 'FAIL'} |"
        )
    for r in rows:
        lines.extend(f"  {r.name} / {r.case}: {n}" for n in r.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from hallucue_mlx.models.shapes import SHAPES

    ap.add_argument("--family", default="all", help=f"all or one of {', '.join(SHAPES)}")
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--vision-layers", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed")
    ap.add_argument("--tiny", action="store_true", help="tiny widths instead of the published ones")
    ap.add_argument("--out", default=None, help="keep the checkpoints in this folder")
    args = ap.parse_args(argv)
    if args.family != "all" and args.family not in SHAPES:
        ap.error(f"--family {args.family!r} is not one of: all, {', '.join(SHAPES)}")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        print(f"needs torch and transformers: pip install 'hallucue-mlx[parity]' ({err})")
        return 2
    names = list(SHAPES) if args.family == "all" else [args.family]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        for name in names:
            t = time.perf_counter()
            rows += run_family(name, root, args)
            print(f"{name}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
