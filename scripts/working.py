#!/usr/bin/env python
"""Does the model write its working? Greedy answers before and after GRPO, on validation items.

For a model (default: the run config's) and each adapter given over it, answers N items of the
VALIDATION split of synth greedily (the run config's template and token limit) and reports, on the
items that ask for additions: the share whose think writes the additions out ("7 + 4 = 11"),
accuracy when written and when skipped, accuracy on one addition and on chains, and the share that
state the visual fact right (`trace.py`); and accuracy on all items. This is how the validation
runs of a warm-up that sometimes skips its working (`WarmupConfig.skip_share`) were read: GRPO's
gain there is the model writing its working every time, not reading the image better. One JSON
object per model, the last lines; --out writes them too.

    python -m hallucue_mlx.fastblas python scripts/working.py --model MODEL --adapter RUN/adapter
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def working_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The shares above from evaluation records (with their trace_* fields)."""
    from hallucue_mlx.trace import think_text

    def acc(rs: list[dict]) -> float | None:
        return round(sum(bool(r["correct"]) for r in rs) / len(rs), 4) if rs else None

    adds = [r for r in records if (r.get("trace_chain") or 0) > 0]
    wrote = [r for r in adds if "+" in think_text(r["response"])]
    skipped = [r for r in adds if "+" not in think_text(r["response"])]
    read = [r for r in adds if r.get("trace_read") is not None]
    return {
        "n": len(records),
        "accuracy": acc(records),
        "addition_items": len(adds),
        "wrote_working": round(len(wrote) / len(adds), 4) if adds else None,
        "accuracy_written": acc(wrote),
        "accuracy_skipped": acc(skipped),
        "accuracy_one_addition": acc([r for r in adds if r["trace_chain"] == 1]),
        "accuracy_chain": acc([r for r in adds if r["trace_chain"] > 1]),
        "read_right": round(sum(bool(r["trace_read"]) for r in read) / len(read), 4)
        if read
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[1])
    ap.add_argument("--config", default=None, help="run config YAML (default: default.yaml)")
    ap.add_argument("--model", default=None, help="hub id or folder (default: the config's)")
    ap.add_argument("--adapter", action="append", default=[], help="an adapter folder (repeat)")
    ap.add_argument("--n", type=int, default=300, help="validation items (default 300)")
    ap.add_argument("--out", default=None, help="also write the JSON lines here")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from hallucue_mlx.config import load_config, train_config_for
    from hallucue_mlx.data.bench import load_benchmark
    from hallucue_mlx.evaluate import Decoding, condition_records
    from hallucue_mlx.models import load_model
    from hallucue_mlx.train import default_reward_fn

    cfg = load_config(args.config, [])
    tcfg = train_config_for(cfg, "none")
    model_id = args.model or cfg.model.id
    items = load_benchmark("synth", "validation", n=args.n, seed=cfg.data.seed)
    decoding = Decoding(tcfg.prompt_template, cfg.eval.max_tokens, cfg.eval.batch_size, seed=0)
    rows = []
    for adapter in [None, *args.adapter]:
        model, processor = load_model(model_id, adapter=adapter, dtype=cfg.model.dtype)
        records = condition_records(
            model, processor, items, "none", decoding, reward_fn=default_reward_fn(tcfg)
        )
        rows.append({"model": str(model_id), "adapter": adapter, **working_summary(records)})
    table = Table(title=f"Greedy answers on {args.n} synth validation items (clean)")
    table.add_column("")
    for r in rows:
        table.add_column(
            Path(r["adapter"]).parent.name if r["adapter"] else "base", justify="right"
        )
    for k in [k for k in rows[0] if k not in ("model", "adapter")]:
        table.add_row(k.replace("_", " "), *["—" if r[k] is None else str(r[k]) for r in rows])
    Console().print(table)
    lines = [json.dumps(r) for r in rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
