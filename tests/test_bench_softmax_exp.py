"""scripts/bench_softmax_exp.py: its polynomial exp is accurate to float32 rounding, its softmax
agrees with MLX's, and it prints a row per size and a JSON last line of positive timings."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np


def test_exp_and_softmax_agree_with_mlx(load_script):
    b = load_script("bench_softmax_exp")
    errors = b.exp_errors()
    assert errors["exp_max_rel_err"] < 2e-7  # float32 rounding (MLX's own exp: ~4e-6)
    x = mx.array([[0.0, -1.0, -90.0, -np.inf, -1e30]])
    assert np.array(b.exp_nonpositive(x)).tolist()[0][2:] == [0.0, 0.0, 0.0]
    rows = 10 * mx.random.normal((7, 33), key=mx.random.key(0))
    cot = mx.random.normal(rows.shape, key=mx.random.key(1))
    softmax = b.make_softmax()
    (want,), (want_grad,) = mx.vjp(lambda t: mx.softmax(t, axis=-1, precise=True), [rows], [cot])
    (got,), (got_grad,) = mx.vjp(softmax, [rows], [cot])
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-6)
    np.testing.assert_allclose(np.array(got_grad), np.array(want_grad), atol=1e-5)


def test_prints_a_row_per_size_and_a_json_line(load_script, capsys):
    b = load_script("bench_softmax_exp")
    assert b.main(["--cols", "8", "--rows", "2,4", "--reps", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    assert set(out["sizes"]) == {"16", "32"}
    for r in out["sizes"].values():
        assert all(r[k] > 0 for k in ("mlx_fwd_us", "ours_fwd_us", "fwd_ratio", "fwd_bwd_ratio"))
        assert r["max_abs_diff"] < 1e-6
    assert [ln.split()[0] for ln in lines[2:4]] == ["16", "32"]
