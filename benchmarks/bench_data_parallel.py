#!/usr/bin/env python
"""Data-parallel GRPO on this machine: one process against `mlx.launch -n 2 --backend ring`.

Runs the default run config's clean training (hallucue-tiny on synth, 16 prompts x 8 completions
a step) for --steps steps with `hallucue-mlx train`: in one process, then under two local ranks
started by mlx.launch, then under two ranks started directly (the environment mlx.launch gives a
ring rank; the launcher's own loop takes CPU), with the same global batch and seed. Prints the
wall time of each, the mean step time (metrics.jsonl, the first step left out: it compiles),
whether the rollouts (items, sampled ids, rewards) equal one process's, and the largest
|difference| of the LoRA weights. The last line is one JSON object.

    python benchmarks/bench_data_parallel.py --steps 10
    python benchmarks/bench_data_parallel.py --set train.max_completion_length=32
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(cfg_file: Path, out: Path, ranks: int, how: str) -> float:
    """Wall seconds of one training: one process, or `ranks` local ranks started by mlx.launch
    ("launch") or directly with the environment mlx.launch gives a ring rank ("direct")."""
    cmd = [sys.executable, "-m", "hallucue_mlx.cli", "train", "--config", str(cfg_file)]
    cmd += ["--out", str(out)]
    t0 = time.perf_counter()
    if ranks == 1:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elif how == "launch":
        launch = Path(sys.executable).parent / "mlx.launch"
        port = str(_port())
        full = [str(launch), "-n", str(ranks), "--backend", "ring", "-p", port, "--", *cmd]
        # a stdin that stays open: at end of input mlx.launch's forwarding loop spins a core
        read, write = os.pipe()
        subprocess.run(full, check=True, stdin=read, stdout=subprocess.DEVNULL)
        os.close(read)
        os.close(write)
    else:
        port = _port()
        hostfile = out.parent / f"hosts-{out.name}.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{port + r}"] for r in range(ranks)]))
        procs = [
            subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "MLX_RANK": str(r), "MLX_HOSTFILE": str(hostfile)},
            )
            for r in range(ranks)
        ]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("a rank failed")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--config", default=None, help="run config YAML (default: default.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np

    from hallucue_mlx.config import load_config, train_config_for

    cfg = load_config(args.config, args.set)
    tcfg = replace(train_config_for(cfg, "none"), steps=args.steps, eval_every=0, save_every=10**6)
    names = {"one": "1 process", "launch": "2 ranks (mlx.launch)", "direct": "2 ranks (direct)"}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file = Path(tmp) / "train.json"
        cfg_file.write_text(json.dumps(asdict(tcfg)))
        runs = {k: Path(tmp) / k for k in names}
        wall = {k: _train(cfg_file, d, 1 if k == "one" else 2, k) for k, d in runs.items()}
        step_s, rollouts, weights = {}, {}, {}
        for k, d in runs.items():
            lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
            times = [r["step_time"] for r in lines if "event" not in r][1:]
            step_s[k] = float(np.mean(times)) if times else float("nan")
            rows = [json.loads(x) for x in (d / "rollouts.jsonl").read_text().splitlines()]
            rollouts[k] = [(r["item_id"], r["completion_ids"], r["reward"]) for r in rows]
            weights[k] = mx.load(str(d / "adapter" / "adapters.safetensors"))
        one = weights["one"]
        diff = {
            k: max(float(mx.abs(one[n] - weights[k][n]).max()) for n in one)
            for k in ("launch", "direct")
        }
    same = {k: rollouts["one"] == rollouts[k] for k in ("launch", "direct")}
    for k, name in names.items():
        print(f"{name}: {wall[k]:.1f} s wall, {step_s[k]:.2f} s a step (after the first)")
    for k in ("launch", "direct"):
        print(f"{names[k]} vs 1 process: same rollouts {same[k]}, max |dLoRA| {diff[k]:.2e}")
    summary = {
        "steps": args.steps,
        "prompts_per_step": tcfg.prompts_per_step,
        "num_generations": tcfg.num_generations,
        "wall_s": wall,
        "step_s": step_s,
        "identical_rollouts": same,
        "max_abs_lora_diff": diff,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
