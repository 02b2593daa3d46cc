"""Parity with transformers (`scripts/parity_transformers.py`) and the workarounds it found.

- The chat prompt puts the image before the question for every family, as the model cards and
  EasyR1 do (mlx-vlm 0.7.10 puts Qwen2-VL's after it: different prompt token ids).
- SmolVLM's vision tower normalises with the config's eps (mlx-vlm builds its last LayerNorm
  with MLX's default).
- With torch and transformers installed, every family at its published widths (reduced depth)
  gives the same token ids, image grid and pixels as transformers, and logits within 1e-4.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.forward import encode_prompt  # noqa: E402
from hallucue_mlx.models import FAMILIES, load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How many dots are there?"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, build_tiny):
    root = tmp_path_factory.mktemp("parity")
    return {f: build_tiny(root / f, family=f) for f in FAMILIES}


@pytest.mark.parametrize("fam", FAMILIES)
def test_the_image_comes_before_the_question_in_every_family(dirs, fam):
    model, proc = load_model(dirs[fam], dtype="float32")
    tok = proc.tokenizer
    image = Image.new("RGB", (112, 112), "white")
    text = tok.decode(encode_prompt(proc, model, QUESTION, image).input_ids.tolist())
    # the checkpoint's own chat template given the model cards' message (image, then text), with
    # the processor's image tokens where the template's placeholder is
    content = [{"type": "image"}, {"type": "text", "text": QUESTION}]
    chat = tok.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    placeholder = "<image>" if fam == "idefics3" else "<|image_pad|>"
    before, after = chat.split(placeholder)
    assert QUESTION in after
    assert text.startswith(before) and text.endswith(after)
    # a text-only prompt is the template's plain user turn
    plain = tok.decode(encode_prompt(proc, model, QUESTION, None).input_ids.tolist())
    assert plain == tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        tokenize=False,
        add_generation_prompt=True,
    )


def test_smolvlm_vision_layernorms_use_the_configs_eps(dirs):
    import mlx.nn as nn

    from hallucue_mlx.models.load import match_published_numerics

    model, _ = load_model(dirs["idefics3"], dtype="float32")
    eps = model.config.vision_config.layer_norm_eps
    norms = [m for _, m in model.vision_model.named_modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == eps for m in norms)
    assert match_published_numerics(model) == []  # idempotent


def test_the_comparison_fails_on_any_difference(load_script):
    """The script's verdict is not a formality: a changed token, grid, pixel, logit or
    continuation log-prob fails it."""
    p = load_script("parity_transformers")
    base = dict(
        ids=np.array([1, 2, 3]),
        grid=(1, 2, 2),
        pixels=np.zeros((4, 6)),
        logits=np.linspace(-3, 3, 15).reshape(3, 5),
        cont_logps=np.full(8, -2.0),
    )
    ours = p.Side(**base)
    assert p.compare("qwen2-vl-2b", "x", ours, p.Side(**base), 1e-4).ok
    changes = {
        "ids": np.array([1, 2, 4]),
        "grid": (1, 2, 4),
        "pixels": np.full((4, 6), 1e-3),
        "logits": base["logits"] + 2e-4,
        "cont_logps": base["cont_logps"] - 2e-4,
    }
    for key, value in changes.items():
        theirs = p.Side(**{**base, key: value})
        assert not p.compare("qwen2-vl-2b", "x", ours, theirs, 1e-4).ok, key


def _has_torch() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


@pytest.mark.slow
@pytest.mark.realwidth
@pytest.mark.skipif(
    not _has_torch(), reason="needs torch and transformers: pip install 'hallucue-mlx[parity]'"
)
def test_every_family_matches_transformers_at_published_width():
    """One model per family (SmolVLM-500M is SmolVLM-256M's family at another width; the
    script's default, --family all, runs it too)."""
    for name in ("qwen2.5-vl-3b", "qwen2-vl-2b", "smolvlm-256m"):
        t = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hallucue_mlx.fastblas",
                sys.executable,
                str(ROOT / "scripts" / "parity_transformers.py"),
                "--family",
                name,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=1800,
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {name} |")]
        assert len(rows) == 3 and all(r.endswith("| OK |") for r in rows), done.stdout
        print(f"{name}: {time.perf_counter() - t:.0f} s")
