"""Helpers of the reliability suite: local-format data folders, a few-step training, a tiny run
config and the CLI in a subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, ImageDraw


def picture(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A small drawing (a dark triangle on a light background) in the given mode."""
    img = Image.new("RGB", size, (240, 240, 230))
    d = ImageDraw.Draw(img)
    w, h = size
    d.polygon([(2, h - 2), (w - 2, h - 2), (w // 2, 2)], fill=(30, 30, 30))
    return img if mode == "RGB" else img.convert(mode)


def write_items(root: Path, rows: list[dict], images: dict[str, Image.Image | bytes] | None = None):
    """A local-format folder: items.jsonl from rows, and images/<name> from PIL images or bytes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for name, img in (images or {}).items():
        if isinstance(img, bytes):
            (root / "images" / name).write_bytes(img)
        else:
            img.save(root / "images" / name)
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return root


def row(i: int | str, **over) -> dict:
    """A valid local-format row (a number question with an image), with fields overridden."""
    r = {
        "id": f"q{i}",
        "question": "How many sides does the shape have?",
        "answer": "3",
        "image": f"images/q{i}.png",
    }
    r.update(over)
    return r


def train_tiny(
    model_dir: Path, out: Path, quiet: bool = True, resume: bool = False, n_items: int = 4, **over
):
    """A few-step GRPO run of the tiny model on n_items synth items, through the public train()."""
    from hallucue_mlx.config import TrainConfig, build
    from hallucue_mlx.data.synth import load_synth
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.train import train

    settings = dict(
        model=str(model_dir),
        steps=3,
        prompts_per_step=1,
        num_generations=2,
        max_completion_length=4,
        eval_every=0,
        n_eval=0,
        save_every=1,
        warmup_steps=0,
        beta=0.0,
        prompt_template="short",
    )
    settings.update(over)
    cfg = build(TrainConfig, settings, "train")
    return train(
        cfg,
        out_dir=out,
        resume=resume,
        quiet=quiet,
        model_and_processor=load_model(str(model_dir)),
        items=load_synth("train", n=n_items, seed=0),
    )


# ---------------------------------------------------------------- the CLI in a subprocess


def grid_yaml(
    path: Path,
    model_dir: Path,
    steps: int = 3,
    n_test: int = 4,
    max_tokens: int = 6,
    batch_size: int = 4,
    processes: int | None = None,
    **train_over,
) -> Path:
    """A tiny run config: 8 synth training items, n_test test items, trainings under none and
    blank, evaluations under none and blank, a checkpoint every step. processes: grid.processes
    (None: one per core on a CPU, as a user gets)."""
    import yaml

    train = dict(
        prompt_template="short",
        num_generations=2,
        prompts_per_step=2,
        max_completion_length=6,
        steps=steps,
        save_every=1,
        eval_every=0,
        n_eval=0,
        warmup_steps=0,
    )
    train.update(train_over)
    cfg = {
        "seed": 0,
        "model": {"id": str(model_dir)},
        "data": {
            "train": {"name": "synth", "split": "train", "n": 8},
            "eval": [{"name": "synth", "split": "test", "n": n_test}],
            "train_slice_n": 2,
        },
        "train": train,
        "eval": {"max_tokens": max_tokens, "batch_size": batch_size, "temperature": 0.0},
        "grid": {
            "train_conditions": ["none", "blank"],
            "eval_conditions": ["none", "blank"],
            "processes": processes,
        },
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Cli:
    """`hallucue-mlx ARGS` in a subprocess; output goes to files (a full pipe never blocks it)."""

    def __init__(self, args: list[str], log_dir: Path, name: str = "cli") -> None:
        import subprocess
        import sys

        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1"}
        env.pop("HALLUCUE_MESSAGES", None)
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hallucue_mlx.cli", *args],
                stdout=out,
                stderr=err,
                env=env,
                # A shell starts background jobs with SIGINT ignored, and children inherit that:
                # give the CLI the default disposition, as in a terminal, whatever runs pytest.
                preexec_fn=_default_sigint,
            )

    def wait_for(self, ready, timeout: float = 120.0, poll: float = 0.02) -> bool:
        """Poll until ready() is true (True) or the process ends first (False)."""
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return True
            if self.proc.poll() is not None:
                return bool(ready())
            time.sleep(poll)
        raise TimeoutError(f"not ready after {timeout} s; stderr: {self.stderr()[-2000:]}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 180.0) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")
