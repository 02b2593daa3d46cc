"""scripts/bench_cpu_ops.py prints a row per op for each library and a JSON last line whose
numbers are ns per element (positive), models/vector_silu.py's SwiGLU among them, and the GEMM
ceiling."""

from __future__ import annotations

import json


def test_prints_a_row_per_op_and_a_json_line(load_script, capsys):
    b = load_script("bench_cpu_ops")
    assert b.main(["--n", "4096", "--reps", "1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    ops = {"add", "multiply", "exp", "log", "sigmoid", "silu", "tanh", "swiglu"}
    assert {"mlx", "numpy"} <= set(out) and out["gemm_gflops"] > 0 and out["mlx_vector_swiglu"] > 0
    for side in ("mlx", "numpy"):
        assert set(out[side]) == ops and all(v > 0 for v in out[side].values())
    assert lines[-2].startswith("swiglu through models/vector_silu.py")
    table = [ln.split()[0] for ln in lines[2:-2] if ln and not ln.startswith("-")]
    assert set(table) == ops
