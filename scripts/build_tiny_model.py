"""Rebuild the embedded model hallucue-tiny deterministically from its seed.

    python scripts/build_tiny_model.py --out hallucue_mlx/assets/hallucue-tiny

Prints one JSON line per probe (accuracy and vision gain against time) and the final eval.json.
Same as `hallucue-mlx model build-tiny --out DIR`.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="WarmupConfig field"
    )
    args = ap.parse_args()
    from dataclasses import fields, replace

    from hallucue_mlx.warmup import WarmupConfig, build_tiny

    types = {f.name: type(f.default) for f in fields(WarmupConfig)}
    overrides = {"seed": args.seed}
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    for kv in args.set:
        key, _, value = kv.partition("=")
        if key not in types:
            raise SystemExit(f"unknown WarmupConfig key {key!r}; valid: {sorted(types)}")
        overrides[key] = types[key](value)
    cfg = replace(WarmupConfig(), **overrides)
    result = build_tiny(args.out, cfg, log=lambda s: print(s, flush=True))
    print(json.dumps(result["eval"], indent=2))


if __name__ == "__main__":
    main()
