#!/usr/bin/env python
"""How much can GRPO learn here? A model's headroom on the training benchmark, as GRPO samples it.

Loads a model (default: the run config's, hallucue-tiny in the packaged default.yaml) and N items
of the VALIDATION split of the config's training benchmark (never the test split: settings are
chosen with this), answers each greedily once and G = train.num_generations times at the
training temperature (train.temperature, train.top_p, train.max_completion_length), and reports
per task, per modality version and overall: greedy accuracy (pass@1 greedy), sampled pass@1 (the
mean over samples), pass@G (some sample right), and the share of items whose G samples are some
right, some wrong (the groups GRPO learns from; "reward spread" also counts the format reward,
which the training's zero-spread filter uses). Printed as a table; the last line is one JSON
object, also written to --out.

    python -m hallucue_mlx.fastblas python scripts/headroom.py
    python scripts/headroom.py --config configs/smolvlm.yaml --n 100 --out headroom.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLUMNS = (
    ("greedy", "greedy"),
    ("pass1", "pass@1"),
    ("pass_at_g", "pass@G"),
    ("spread", "mixed"),
    ("reward_spread", "reward≠"),
)
CAPTION = (
    "% of items. greedy: pass@1 at temperature 0; pass@1: the mean over the G samples; pass@G: "
    "some sample right; mixed: some samples right, some wrong; reward≠: rewards not all equal "
    "(format included)"
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    from hallucue_mlx.corrupt import CORRUPTIONS

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[1])
    ap.add_argument("--config", default=None, help="run config YAML (default: default.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--model", default=None, help="hub id or folder (default: the config's)")
    ap.add_argument(
        "--template", default=None, help="prompt template (default: the config's, resolved)"
    )
    ap.add_argument("--n", type=int, default=300, help="validation items (default 300)")
    ap.add_argument(
        "--condition",
        default="none",
        choices=CORRUPTIONS,
        help="corruption the items get, at the training ratio (default none)",
    )
    ap.add_argument("--seed", type=int, default=None, help="sampling seed (default: the config's)")
    ap.add_argument("--out", default=None, help="write the JSON result to this file")
    return ap.parse_args(argv)


def table(result: dict[str, Any], title: str) -> Any:
    """The result as a rich table: overall, then per task, then per version."""
    from rich.table import Table

    t = Table(title=title, caption=CAPTION)
    t.add_column("group")
    t.add_column("n", justify="right")
    for _, head in COLUMNS:
        t.add_column(head, justify="right")

    def add(name: str, row: dict[str, Any]) -> None:
        cells = ["—" if row[k] is None else f"{100 * row[k]:.1f}" for k, _ in COLUMNS]
        t.add_row(name, str(row["n"]), *cells)

    add("overall", result["overall"])
    for field in ("task", "version"):
        for name, row in result[f"by_{field}"].items():
            add(f"{field} {name}", row)
    return t


def _rounded(x: Any) -> Any:
    """Floats to 4 digits, through dicts and lists."""
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return [_rounded(v) for v in x] if isinstance(x, list) else x


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    from rich.console import Console

    from hallucue_mlx.config import image_sizes, load_config, train_config_for
    from hallucue_mlx.data.bench import get_adapter, load_benchmark
    from hallucue_mlx.evaluate import Decoding, condition_records
    from hallucue_mlx.metrics import headroom
    from hallucue_mlx.models import load_model
    from hallucue_mlx.train import default_reward_fn

    cfg = load_config(args.config, args.set)
    if args.model:
        cfg = replace(cfg, model=replace(cfg.model, id=args.model))
    spec = cfg.data.train
    if "validation" not in get_adapter(spec.name).splits:
        print(
            f"error: {spec.name} has no validation split, and settings must not be chosen on the "
            "test split; use a training benchmark with one (synth, geometry3k)",
            file=sys.stderr,
        )
        return 2
    tcfg = train_config_for(cfg, args.condition)
    template = args.template or tcfg.prompt_template
    seed = cfg.seed if args.seed is None else args.seed
    G, T = tcfg.num_generations, tcfg.temperature
    items = load_benchmark(spec.name, "validation", n=args.n, seed=cfg.data.seed)
    model, processor = load_model(
        cfg.model.id, adapter=cfg.model.adapter, dtype=cfg.model.dtype, **image_sizes(cfg.model)
    )
    greedy_dec = Decoding(template, tcfg.max_completion_length, cfg.eval.batch_size, seed=seed)
    # sampled as training samples: its prompts per step decoded together, G completions each
    sampled_dec = replace(
        greedy_dec,
        batch_size=tcfg.prompts_per_step,
        samples=G,
        temperature=T,
        top_p=tcfg.top_p,
    )
    reward_fn = default_reward_fn(tcfg)
    t0 = time.perf_counter()
    kw = dict(ratio=tcfg.corruption_ratio, reward_fn=reward_fn)
    greedy = condition_records(model, processor, items, args.condition, greedy_dec, **kw)
    sampled = condition_records(model, processor, items, args.condition, sampled_dec, **kw)
    seconds = time.perf_counter() - t0

    result = {
        "model": cfg.model.id,
        "benchmark": spec.name,
        "split": "validation",
        "condition": args.condition,
        "template": template,
        "n": len(items),
        "G": G,
        "temperature": T,
        "top_p": tcfg.top_p,
        "max_tokens": tcfg.max_completion_length,
        "seed": seed,
        "seconds": round(seconds, 1),
        **headroom(sampled, greedy),
    }
    title = (
        f"{cfg.model.id} on {spec.name}/validation ({len(items)} items, {args.condition}): "
        f"greedy, and G = {G} samples at T = {T}"
    )
    Console().print(table(result, title))
    line = json.dumps(_rounded(result))
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
