"""Coverage of the few-seed intervals (metrics.seed_cluster_ci), by simulation.

A headline number is a mean over S training seeds and I test items, and its interval should cover
the mean over seeds *and* items (another draw of either moves it). Three ways to build it from
v_seed = var(seed means) / S and v_item = var(seed-averaged item values) / I:

    seeds-only    t(S-1) * sqrt(v_seed)                ignores item sampling
    t(S-1) sum    t(S-1) * sqrt(v_seed + v_item)       the previous seed_cluster_ci
    Satterthwaite t(df) * sqrt(v_seed + v_item),       the current one: df from
                  df = (v_seed + v_item)^2 / (v_seed^2 / (S-1) + v_item^2 / (I-1))

The simulated lab: each item has a base outcome (greedy: fixed) and a trained propensity p_i
(items the base solved keep theirs with mean 0.87, the rest are solved with mean 0.25, as in the
default run); kappa sets how polarised p_i is across items (kappa 1: items are mostly always or
never solved, as greedy decoding makes them; kappa 20: every item is a coin), and each training
seed shifts every item's propensity by u_s ~ N(0, tau). The estimand is the population mean gain
over seeds and items. Prints, per setting, the coverage of a nominal 95% interval over `--sims`
draws of 3 seeds x 600 items, and the mean half-width.

    python benchmarks/bench_seed_interval.py            # about 20 s
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import t

BASE_P = 0.445  # the shipped model's clean test accuracy
KEEP, GAIN = 0.87, 0.25  # trained propensity on items the base solved / did not


def propensities(rng: np.random.Generator, n: int, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    base = (rng.random(n) < BASE_P).astype(float)
    mean = np.where(base == 1, KEEP, GAIN)
    p = rng.beta(mean * kappa, (1 - mean) * kappa)
    return base, p


def true_gain(kappa: float, tau: float, rng: np.random.Generator) -> float:
    base, p = propensities(rng, 400_000, kappa)
    u = rng.normal(0, tau, size=(64, 1)) if tau > 0 else np.zeros((1, 1))
    return float(np.clip(p[None] + u, 0, 1).mean() - base.mean())


def simulate(kappa: float, tau: float, sims: int, n_seeds: int, n_items: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    truth = true_gain(kappa, tau, rng)
    hit = {"seeds-only": 0, "t(S-1) sum": 0, "Satterthwaite": 0, "max": 0}
    width = dict.fromkeys(hit, 0.0)
    q = 0.975
    for _ in range(sims):
        base, p = propensities(rng, n_items, kappa)
        u = rng.normal(0, tau, size=(n_seeds, 1))
        trained = (rng.random((n_seeds, n_items)) < np.clip(p[None] + u, 0, 1)).astype(float)
        d = trained - base[None]
        mean = d.mean()
        v_seed = d.mean(axis=1).var(ddof=1) / n_seeds
        v_item = d.mean(axis=0).var(ddof=1) / n_items
        df = (v_seed + v_item) ** 2 / (v_seed**2 / (n_seeds - 1) + v_item**2 / (n_items - 1))
        halves = {
            "seeds-only": t.ppf(q, n_seeds - 1) * np.sqrt(v_seed),
            "t(S-1) sum": t.ppf(q, n_seeds - 1) * np.sqrt(v_seed + v_item),
            "Satterthwaite": t.ppf(q, df) * np.sqrt(v_seed + v_item),
        }
        halves["max"] = max(halves["seeds-only"], halves["Satterthwaite"])
        for k, h in halves.items():
            hit[k] += abs(mean - truth) <= h
            width[k] += h
    return {k: (hit[k] / sims, 100 * width[k] / sims) for k in hit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--items", type=int, default=600)
    args = ap.parse_args()
    print(
        f"nominal 95% intervals for the mean gain, {args.seeds} seeds x {args.items} items, "
        f"{args.sims} simulated labs per row: coverage (mean half-width, points)"
    )
    names = ["seeds-only", "t(S-1) sum", "Satterthwaite", "max"]
    print(f"{'kappa':>6} {'tau':>6}  " + "  ".join(f"{n:>20}" for n in names))
    for kappa in (1.0, 20.0):
        for tau in (0.0, 0.01, 0.02, 0.04, 0.08):
            res = simulate(kappa, tau, args.sims, args.seeds, args.items, seed=int(tau * 1000))
            cells = "  ".join(f"{res[n][0]:>11.3f} ({res[n][1]:4.1f})" for n in names)
            print(f"{kappa:>6.0f} {tau:>6.2f}  {cells}")


if __name__ == "__main__":
    main()
