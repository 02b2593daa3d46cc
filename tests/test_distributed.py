"""Data-parallel GRPO and the grid over several processes (hallucue_mlx.distributed).

Fast tests check the pieces in one process: a share of a step samples what one process samples,
the shares' losses add up to the whole batch's, the batch must split evenly, the grid's cells are
dealt to ranks, a stuck collective is stopped by the watchdog. The slow ones launch two local
ranks with `mlx.launch --backend ring` and compare with one process at the same global batch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.config import (  # noqa: E402
    ConfigError,
    TrainConfig,
    build,
    config_hash,
    load_config,
)
from hallucue_mlx.distributed import STUCK_EXIT, PeerLost, World, current  # noqa: E402
from hallucue_mlx.grid import owners, parallel_mode, plan, rank_tasks  # noqa: E402
from hallucue_mlx.grpo import BatchTotals, LossConfig, grpo_loss  # noqa: E402
from hallucue_mlx.train import train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
# max |ΔLoRA| between two ranks and one process (float summation order). Measured after the
# 4-step training below, where LoRA B reaches 0.047: 7e-6. An update lost or counted twice moves
# LoRA B by its own size.
LORA_TOLERANCE = 1e-4
# Keys of metrics.jsonl that are wall-clock or per-process measurements, not results.
TIMES = {"rollout_time", "update_time", "step_time", "rollout_tokens_per_s", "peak_memory_gb"}


# ================================================================ one process


def test_one_process_is_a_world_of_one(monkeypatch):
    for k in ("MLX_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(k, raising=False)
    w = current()
    assert (w.rank, w.size, w.is_main, w.distributed) == (0, 1, True, False)
    x = [mx.array([1.0, 2.0])]
    assert w.sum_arrays(x, "t") == x and w.gather_json({"a": 1}, "t") == [{"a": 1}]
    assert w.broadcast_json(3, "t") == 3 and w.max_values([2.5], "t") == [2.5]
    assert w.on_main(lambda: 7, "t") == 7 and w.share(6, "n") == range(0, 6)


def test_a_batch_must_split_evenly_over_the_ranks(tiny_dir, tmp_path):
    assert World(1, 2).share(6, "n") == range(3, 6)
    with pytest.raises(ValueError, match="make it a multiple of 4"):
        World(0, 4).share(6, "train.prompts_per_step")
    cfg = build(TrainConfig, {"prompts_per_step": 4, "steps": 1}, "train")
    with pytest.raises(ConfigError, match="train.prompts_per_step = 4 does not split") as e:
        train(cfg, tiny_dir, tmp_path / "t", quiet=True, world=World(0, 3))
    assert e.value.key == "train.prompts_per_step" and not (tmp_path / "t").exists()
    run_cfg = load_config(None, ["train.prompts_per_step=3", "grid.parallel=data"])
    with pytest.raises(ConfigError, match="multiple of 2, or use grid.parallel: cells"):
        parallel_mode(run_cfg, World(0, 2))
    assert parallel_mode(run_cfg, World()) is None
    assert parallel_mode(load_config(None, ["train.prompts_per_step=3"]), World(0, 2)) == "cells"


def test_a_share_of_a_step_samples_what_one_process_samples(tiny_dir):
    """rows=(first, total): each row draws the noise it gets in the whole batch's draw."""
    from hallucue_mlx.data.bench import load_benchmark
    from hallucue_mlx.forward import encode_prompt
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.rollout import generate

    model, processor = load_model(str(tiny_dir))
    items = load_benchmark("synth", "train", n=4, seed=0)
    prompts = [encode_prompt(processor, model, it, template="short") for it in items]
    kw = dict(n=3, temperature=1.0, max_tokens=8, key=mx.random.key(11), top_p=0.9)
    whole = generate(model, processor, prompts, **kw)
    halves = generate(model, processor, prompts[:2], rows=(0, 12), **kw) + generate(
        model, processor, prompts[2:], rows=(6, 12), **kw
    )
    assert [[c.ids for c in g] for g in whole] == [[c.ids for c in g] for g in halves]
    lp = [np.array(c.logprobs) for g in whole for c in g]
    lp2 = [np.array(c.logprobs) for g in halves for c in g]
    assert max(np.abs(a - b).max() for a, b in zip(lp, lp2)) < 1e-4
    # a share drawn without `rows` samples other tokens: the test can fail
    alone = generate(model, processor, prompts[2:], **kw)
    assert [[c.ids for c in g] for g in alone] != [[c.ids for c in g] for g in whole[2:]]


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_shares_of_a_batch_add_up_to_the_whole_batch(loss_type, level):
    """Each share normalised by the whole batch's counts: losses, gradients, metrics add up."""
    rng = np.random.default_rng(0)
    B, T, G = 8, 6, 2
    lengths = rng.integers(1, T + 1, B)
    mask = mx.array((np.arange(T)[None] < lengths[:, None]).astype(np.float32))
    logps = mx.array(rng.normal(-2, 0.5, (B, T)).astype(np.float32))
    old = logps + mx.array(rng.normal(0, 0.3, (B, T)).astype(np.float32))
    ref = logps + mx.array(rng.normal(0, 0.2, (B, T)).astype(np.float32))
    adv = mx.array(rng.normal(0, 1, B).astype(np.float32))
    cfg = LossConfig(loss_type=loss_type, beta=0.05, importance_sampling_level=level)

    def loss(lp, rows, totals):
        s = slice(*rows)
        return grpo_loss(lp, old[s], adv[s], mask[s], cfg, ref[s], totals)

    whole_loss, whole_metrics = loss(logps, (0, B), None)
    whole_grad = mx.grad(lambda lp: loss(lp, (0, B), None)[0])(logps)
    totals = BatchTotals(int(lengths.sum()), B)
    shares = [(0, 3 * G), (3 * G, B)]  # whole groups, unequal token counts
    parts = [loss(logps[a:b], (a, b), totals) for a, b in shares]
    grads = [mx.grad(lambda lp, r=(a, b): loss(lp, r, totals)[0])(logps[a:b]) for a, b in shares]
    assert abs(sum(p[0].item() for p in parts) - whole_loss.item()) < 1e-6
    assert mx.allclose(mx.concatenate(grads), whole_grad, atol=1e-7).item()
    for k, v in whole_metrics.items():
        assert abs(sum(p[1][k].item() for p in parts) - v.item()) < 1e-6, k
    # normalised per share instead (each share's own mean), the sum is not the whole's
    local = [loss(logps[a:b], (a, b), None)[0].item() for a, b in shares]
    assert abs(sum(local) - whole_loss.item()) > 1e-6


def test_cells_are_dealt_to_ranks_by_model():
    cfg = load_config(None, [])
    own = owners(cfg, 2)
    assert own == {"base": 0, "none": 1, "blank": 0, "random": 1, "text_removal": 0}
    shares = [rank_tasks(cfg, World(r, 2), "cells") for r in range(2)]
    assert sorted(map(str, shares[0] + shares[1])) == sorted(map(str, plan(cfg)))
    for r, tasks in enumerate(shares):
        assert {own[t.model] for t in tasks} == {r}
        trained = [t.model for t in tasks if t.kind == "train"]
        for t in tasks:  # a model's evaluations come after its training, on the same rank
            if t.kind == "eval" and t.model in trained:
                assert tasks.index(t) > tasks.index(next(x for x in tasks if x.model == t.model))
    # data: every rank joins each training, then rank 0 alone evaluates
    assert [t.kind for t in rank_tasks(cfg, World(1, 2), "data")] == ["train"] * 4
    main = rank_tasks(cfg, World(0, 2), "data")
    assert [t.kind for t in main] == ["train"] * 4 + ["eval"] * 10
    assert sorted(map(str, main)) == sorted(map(str, plan(cfg)))
    assert rank_tasks(cfg, World(), None) == plan(cfg)


def test_ranks_on_one_host_share_its_cores(tmp_path, monkeypatch):
    from hallucue_mlx.backend import local_ranks

    monkeypatch.delenv("MLX_HOSTFILE", raising=False)
    assert local_ranks() == 1
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps([["127.0.0.1:5000"], ["127.0.0.1:5001"], ["10.0.0.2:5002"]]))
    monkeypatch.setenv("MLX_HOSTFILE", str(hosts))
    monkeypatch.setenv("MLX_RANK", "1")
    assert local_ranks() == 2
    monkeypatch.setenv("MLX_RANK", "2")
    assert local_ranks() == 1
    hosts.write_text("")  # mlx.launch's hostfile for one host
    assert local_ranks() == 1


def test_run_starts_one_process_per_core_on_a_cpu_as_memory_allows():
    from hallucue_mlx.grid import local_processes

    cfg = load_config(None, [])  # five models: base and four trainings
    here = {"peak_gb": 1.4, "usable_gb": 20.0}
    assert local_processes(cfg, backend="cpu", cores=2, **here) == 2
    assert local_processes(cfg, backend="cpu", cores=16, **here) == 5  # at most one per model
    assert local_processes(cfg, backend="cpu", cores=1, **here) == 1
    assert local_processes(cfg, backend="cpu", cores=8, peak_gb=8.0, usable_gb=20.0) == 2
    assert local_processes(cfg, backend="cpu", cores=8, peak_gb=30.0, usable_gb=20.0) == 1
    assert local_processes(cfg, backend="cpu", cores=8, peak_gb=0.0, usable_gb=0.0) == 1
    assert local_processes(cfg, backend="gpu", cores=16, **here) == 1  # Metal, CUDA: one
    # data: every rank trains each model, so the count must divide the batch (16 prompts)
    data = load_config(None, ["grid.parallel=data"])
    assert local_processes(data, backend="cpu", cores=6, **here) == 4
    assert local_processes(load_config(None, ["grid.processes=3"]), backend="gpu") == 3
    # a sweep shares each value's grid in turn: one value's models count
    seeds = load_config(None, ["grid.seeds=3"])
    assert local_processes(seeds, backend="cpu", cores=16, **here) == 5
    ratios = load_config("ratio-sweep", [])  # base, GRPO, GRPO-BI, GRPO-TR at each ratio
    assert local_processes(ratios, backend="cpu", cores=16, **here) == 4
    assert local_processes(ratios, backend="cpu", cores=2, **here) == 2
    assert local_processes(ratios, backend="gpu", cores=16, **here) == 1
    # how the work is shared is not a result: the run folder's config hash ignores it
    assert config_hash(load_config(None, ["grid.processes=3"])) == config_hash(cfg)
    with pytest.raises(ConfigError, match="grid.processes"):
        load_config(None, ["grid.processes=0"])


# a rank of launch_local: says it started, then does what $RANK_ACT says for its rank
_RANK = textwrap.dedent(
    """
    import os, signal, sys, time
    rank, d = os.environ["MLX_RANK"], os.environ["RANK_DIR"]
    act = os.environ["RANK_ACT"].split(",")[int(rank)]
    got = []
    def on_int(signum, frame):
        got.append(signum)
        open(os.path.join(d, f"int-{rank}"), "a").write("x")
    signal.signal(signal.SIGINT, on_int)
    open(os.path.join(d, f"pid-{rank}"), "w").write(str(os.getpid()))
    if act.startswith("exit"):
        time.sleep(0.5)
        sys.exit(int(act[4:]))
    deadline = time.time() + 60
    while time.time() < deadline:  # "wait": until a SIGINT, then stop as the CLI does (130)
        time.sleep(0.05)
        if got and act == "wait":
            time.sleep(0.3)  # a second signal in this while would be counted
            sys.exit(130)
    sys.exit(5)
    """
)


def _pids(d: Path, n: int) -> list[int]:
    deadline = time.time() + 30
    while time.time() < deadline:
        files = [d / f"pid-{r}" for r in range(n)]
        if all(f.exists() and f.read_text() for f in files):
            return [int(f.read_text()) for f in files]
        time.sleep(0.05)
    raise TimeoutError("the ranks did not start")


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((ln for ln in status.splitlines() if ln.startswith("State:")), "")
    return "zombie" not in state


def test_a_failing_rank_stops_the_others_and_sets_the_exit_status(tmp_path, monkeypatch):
    from hallucue_mlx.distributed import launch_local

    monkeypatch.setenv("RANK_DIR", str(tmp_path))
    monkeypatch.setenv("RANK_ACT", "stay,exit3")  # rank 0 would run 60 s
    start = time.time()
    assert launch_local([sys.executable, "-c", _RANK], 2) == 3
    assert time.time() - start < 30  # rank 0 was stopped, not waited for
    monkeypatch.setenv("RANK_ACT", "exit0,exit0")
    assert launch_local([sys.executable, "-c", _RANK], 2) == 0


def test_a_rank_interrupted_alone_gets_the_others_interrupted(tmp_path, monkeypatch):
    from hallucue_mlx import distributed

    monkeypatch.setattr(distributed, "INTERRUPT_GRACE_S", 0.5)
    monkeypatch.setenv("RANK_DIR", str(tmp_path))
    monkeypatch.setenv("RANK_ACT", "wait,exit130")  # kill -INT of rank 1 alone, as it were
    assert distributed.launch_local([sys.executable, "-c", _RANK], 2) == 130
    assert (tmp_path / "int-0").read_text() == "x"  # rank 0 got one Ctrl-C and stopped


_LAUNCHER = textwrap.dedent(
    """
    import sys
    from hallucue_mlx.distributed import launch_local
    sys.exit(launch_local([sys.executable, "-c", sys.argv[1]], 2))
    """
)


def _start_launcher(tmp_path: Path, act: str) -> subprocess.Popen:
    env = {**_env(), "RANK_DIR": str(tmp_path), "RANK_ACT": act}
    return subprocess.Popen([sys.executable, "-c", _LAUNCHER, _RANK], env=env)


def test_ctrl_c_reaches_each_rank_once_through_the_launcher(tmp_path):
    proc = _start_launcher(tmp_path, "wait,wait")
    try:
        _pids(tmp_path, 2)
        proc.send_signal(signal.SIGINT)  # a terminal's Ctrl-C reaches the launcher's group
        assert proc.wait(30) == 130
    finally:
        proc.kill()
    assert [(tmp_path / f"int-{r}").read_text() for r in range(2)] == ["x", "x"]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="checks processes in /proc")
def test_killing_the_launcher_kills_its_ranks(tmp_path):
    proc = _start_launcher(tmp_path, "stay,stay")
    try:
        pids = _pids(tmp_path, 2)
        proc.kill()
        proc.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        proc.kill()


def test_a_lost_peer_and_a_stuck_one_are_reported(tmp_path):
    w = World(1, 2)
    with pytest.raises(PeerLost, match=r"rank 1 of 2: lost the connection .* step 3's rollouts"):
        with w._collective("step 3's rollouts", None):
            raise RuntimeError("[ring] connection to a peer was lost")
    code = textwrap.dedent(
        """
        import time
        from hallucue_mlx.distributed import World, _timeout
        with World(0, 2)._collective("step 5's gradients", _timeout()):
            time.sleep(30)
        """
    )
    env = {**os.environ, "HALLUCUE_DIST_TIMEOUT": "1", "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == STUCK_EXIT and time.perf_counter() - t0 < 25
    assert "rank 0 of 2: no answer from the other ranks for 1 s" in res.stderr
    assert "step 5's gradients" in res.stderr and "rerun the same command" in res.stderr


# ================================================================ two local ranks (mlx.launch)


def _launcher() -> Path:
    path = Path(sys.executable).parent / "mlx.launch"
    if not path.is_file():
        pytest.skip("mlx.launch is not installed beside this Python")
    return path


def _free_ports(n: int) -> int:
    """A first port p with p .. p+n-1 free (the ring backend listens on one per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + n >= 65535:
            continue
        try:
            socks = []
            for q in range(p, p + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _cli(args: list[str], ranks: int = 1) -> list[str]:
    cmd = [sys.executable, "-m", "hallucue_mlx.cli", *args]
    if ranks == 1:
        return cmd
    port = _free_ports(ranks)
    return [str(_launcher()), "-n", str(ranks), "--backend", "ring", "-p", str(port), "--", *cmd]


def _start(args: list[str], ranks: int = 1) -> tuple[subprocess.Popen, int]:
    """The command in its own process group (so a timeout stops its ranks too), with a stdin that
    stays open: at end of input mlx.launch's loop that forwards stdin to the ranks spins a core.
    Returns the process and the pipe's write end."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        _cli(args, ranks),
        stdin=read,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=REPO,
        start_new_session=True,
    )
    os.close(read)
    return proc, write


def _finish(proc: subprocess.Popen, stdin: int, timeout: int) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and any rank still running
        except ProcessLookupError:
            pass
        proc.wait()
        os.close(stdin)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run(args: list[str], ranks: int = 1, timeout: int = 240) -> subprocess.CompletedProcess:
    return _finish(*_start(args, ranks), timeout)


def _train_args(tiny: Path, out: Path, steps: int, **extra: object) -> list[str]:
    sets = {
        "n_train": 16,
        "prompts_per_step": 4,
        "num_generations": 3,
        "max_completion_length": 8,
        "temperature": 1.0,
        "learning_rate": 1e-2,
        "warmup_steps": 1,
        "num_iterations": 2,
        "beta": 0.01,
        "save_every": 2,
        "eval_every": 2,
        "n_eval": 4,
        "drop_zero_std_groups": True,
        "prompt_template": "short",
        "corruption": "blank",
        "corruption_ratio": 0.5,
        "reward_function": "user_reward:reward_spaces",
        **extra,
    }
    args = ["train", "--model", str(tiny), "--out", str(out), "--steps", str(steps)]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _adapter(d: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(d / "adapters.safetensors")).items()}


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name != ".hallucue.lock")


@pytest.mark.slow
def test_two_ranks_train_what_one_process_trains(tiny_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    a = _run(_train_args(tiny_dir, one, 4))
    assert a.returncode == 0, a.stderr[-3000:]
    b = _run(_train_args(tiny_dir, two, 4), ranks=2)
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-3000:]
    assert b.stdout.count("Done: 4 steps") == 1  # rank 0 alone reports (and writes)
    assert _files(one) == _files(two)
    # the same data order, corruptions, samples and rewards
    ra, rb = _lines(one / "rollouts.jsonl"), _lines(two / "rollouts.jsonl")
    keys = ("step", "item_id", "group", "completion_ids", "reward", "advantage", "corruption")
    assert [[r[k] for k in keys] for r in ra] == [[r[k] for k in keys] for r in rb]
    ma, mb = _lines(one / "metrics.jsonl"), _lines(two / "metrics.jsonl")
    assert [m["step"] for m in ma] == [m["step"] for m in mb] and len(ma) == 4 + 3  # 3 evals
    for x, y in zip(ma, mb):
        assert x.keys() == y.keys()
        for k in x.keys() - TIMES:
            if isinstance(x[k], float) and k not in ("reward", "reward_std", "accuracy"):
                assert abs(x[k] - y[k]) <= 1e-4 * max(1.0, abs(x[k])), (x["step"], k)
            else:
                assert x[k] == y[k], (x["step"], k)
    wa, wb = _adapter(one / "adapter"), _adapter(two / "adapter")
    diff = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    assert diff < LORA_TOLERANCE
    assert max(float(np.abs(v).max()) for k, v in wa.items() if k.endswith("lora_b")) > 0


def _rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the rank process whose command line names `marker` (Linux /proc)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
            env = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            marker.encode() in cmd
            and b"hallucue_mlx.cli" in cmd
            and f"MLX_RANK={rank}".encode() in env
        ):
            return int(p.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_rank_is_reported_and_a_rerun_resumes(tiny_dir, tmp_path):
    out = tmp_path / "killed"
    args = _train_args(tiny_dir, out, 12, eval_every=0, max_completion_length=16)
    proc, stdin = _start(args, ranks=2)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            ck = out / "checkpoints" / "latest"
            if ck.is_file() and json.loads(ck.read_text())["step"] >= 2:
                break
            time.sleep(0.1)
        pid = _rank_pid(1, str(out))
        assert proc.poll() is None and pid is not None, "the run ended before rank 1 was killed"
        os.kill(pid, signal.SIGKILL)
    finally:
        res = _finish(proc, stdin, 60)
    # mlx.launch itself exits 0 whatever its ranks do; the ranks and the launcher say what happened
    text = res.stdout + res.stderr
    said = ("rank 0 of 2: lost the connection to another rank", "rank 0 of 2: stopped by SIGTERM")
    assert any(s in text for s in said), text[-3000:]
    assert "rerun the same command" in text and "Node with rank 1 exited" in text
    saved = json.loads((out / "checkpoints" / "latest").read_text())["step"]
    assert 2 <= saved < 12
    # one process continues the two ranks' run from their last checkpoint
    res = _run([*args, "--resume"])
    assert res.returncode == 0, res.stderr[-3000:]
    steps = [m["step"] for m in _lines(out / "metrics.jsonl") if "event" not in m]
    assert steps == list(range(1, 13))
    assert (out / "adapter" / "adapters.safetensors").is_file()


@pytest.mark.slow
def test_run_quick_under_two_ranks_gives_one_process_cells(tmp_path):
    sets = ["grid.train_conditions=[none,blank]", "grid.eval_conditions=[blank]"]
    sets += ["grid.include_base=false"]
    sets = [a for s in sets for a in ("--set", s)]
    one, two = tmp_path / "one", tmp_path / "two"
    a = _run(["run", "--quick", "--out", str(one), *sets])
    assert a.returncode == 0, a.stderr[-3000:]
    b = _run(["run", "--quick", "--out", str(two), *sets], ranks=2)
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-3000:]
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb
    assert (two / "report.md").is_file() and not list(two.glob(".hallucue.rank*"))
    # each training ran whole in one process, with half the cores' BLAS threads (another
    # summation order): the same rollouts, weights equal to float rounding
    for cond in ("none", "blank"):
        ra, rb = (_lines(d / "train" / cond / "rollouts.jsonl") for d in (one, two))
        assert [r["completion_ids"] for r in ra] == [r["completion_ids"] for r in rb]
        wa, wb = (_adapter(d / "train" / cond / "adapter") for d in (one, two))
        assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < LORA_TOLERANCE
    timing = json.loads((two / "timing.json").read_text())["tasks"]
    assert {"train none", "train blank"} <= set(timing)  # rank 1's tasks were reported to rank 0


@pytest.mark.slow
def test_run_quick_data_parallel_trains_what_one_process_trains(tmp_path):
    sets = [
        "grid.train_conditions=[none]",
        "grid.eval_conditions=[none]",
        "grid.include_base=false",
    ]
    args = [a for s in sets for a in ("--set", s)]
    one, two = tmp_path / "one", tmp_path / "two"
    a = _run(["run", "--quick", "--out", str(one), *args])
    assert a.returncode == 0, a.stderr[-3000:]
    b = _run(["run", "--quick", "--out", str(two), *args, "--set", "grid.parallel=data"], ranks=2)
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-3000:]
    ra, rb = (_lines(d / "train" / "none" / "rollouts.jsonl") for d in (one, two))
    assert [(r["item_id"], r["completion_ids"], r["reward"]) for r in ra] == [
        (r["item_id"], r["completion_ids"], r["reward"]) for r in rb
    ]
    wa, wb = (_adapter(d / "train" / "none" / "adapter") for d in (one, two))
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < LORA_TOLERANCE
    ca, cb = (json.loads((d / "results.json").read_text())["cells"] for d in (one, two))
    assert ca == cb  # greedy evaluation of weights that differ by float summation order


@pytest.mark.slow
def test_run_on_two_local_processes_interrupted_and_resumed_gives_one_process_cells(tmp_path):
    """`hallucue-mlx run` with grid.processes=2 (what a 2-core CPU gets by default): Ctrl-C
    stops both processes with one resume line, and the rerun's results equal one process's."""
    sets = ["grid.train_conditions=[none,blank]", "grid.eval_conditions=[none,blank]"]
    sets += ["data.train.n=8", "data.eval=[{name: synth, split: test, n: 8}]"]
    sets += ["data.train_slice_n=4", "eval.max_tokens=16", "train.max_completion_length=16"]
    sets += ["train.steps=6", "train.save_every=1", "train.eval_every=0", "train.warmup_steps=0"]
    sets += ["train.prompts_per_step=2", "train.num_generations=2"]
    sets = [a for s in sets for a in ("--set", s)]
    one, two = tmp_path / "one", tmp_path / "two"
    a = _run(["run", "--out", str(one), *sets, "--set", "grid.processes=1"])
    assert a.returncode == 0, a.stderr[-3000:]
    args = ["run", "--out", str(two), *sets, "--set", "grid.processes=2"]
    proc, stdin = _start(args)
    latest = two / "train" / "none" / "checkpoints" / "latest"
    deadline = time.time() + 180
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the launcher alone, as a terminal's Ctrl-C
    b = _finish(proc, stdin, 180)
    assert b.returncode == 130, b.stderr[-3000:]
    assert "2 processes on this machine's cores" in b.stderr
    assert b.stderr.count("Continue with:") == 1 and "process 1 stopped" in b.stderr
    assert not (two / "results.json").exists()
    c = _run(args)
    assert c.returncode == 0, c.stdout[-2000:] + c.stderr[-3000:]
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (one, two))
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb
    steps = [
        m["step"] for m in _lines(two / "train" / "none" / "metrics.jsonl") if "event" not in m
    ]
    assert steps == list(range(1, 7))  # resumed from its checkpoint, no step twice


@pytest.mark.slow
def test_a_sweep_on_two_local_processes_interrupted_and_resumed_gives_one_process_cells(
    tmp_path,
):
    """A ratio sweep on two processes, Ctrl-C'd in its second value's training: one resume
    line, the first value kept, and the rerun's value folders equal one process's."""
    sets = ["grid.ratios=[0.5,1.0]", "grid.train_conditions=[none,blank]"]
    sets += ["grid.eval_conditions=[none]", "grid.include_base=false"]
    sets += ["data.train.n=8", "data.eval=[{name: synth, split: test, n: 8}]"]
    sets += ["data.train_slice_n=4", "eval.max_tokens=16", "train.max_completion_length=16"]
    sets += ["train.steps=6", "train.save_every=1", "train.eval_every=0", "train.warmup_steps=0"]
    sets += ["train.prompts_per_step=2", "train.num_generations=2"]
    sets = [a for s in sets for a in ("--set", s)]
    base = ["run", "--config", "ratio-sweep", *sets]
    one, two = tmp_path / "one", tmp_path / "two"
    a = _run([*base, "--out", str(one), "--set", "grid.processes=1"])
    assert a.returncode == 0, a.stderr[-3000:]
    args = [*base, "--out", str(two), "--set", "grid.processes=2"]
    proc, stdin = _start(args)
    latest = two / "grid.ratio=1.0" / "train" / "blank" / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    b = _finish(proc, stdin, 180)
    assert b.returncode == 130, b.stderr[-3000:]
    assert b.stderr.count("Continue with:") == 1
    assert (two / "grid.ratio=0.5" / "results.json").is_file()
    assert not (two / "grid.ratio=1.0" / "results.json").exists()
    c = _run(args)
    assert c.returncode == 0, c.stdout[-2000:] + c.stderr[-3000:]
    for value in ("grid.ratio=0.5", "grid.ratio=1.0"):
        ra, rb = (json.loads((d / value / "results.json").read_text()) for d in (one, two))
        ra.pop("timing"), rb.pop("timing")
        assert ra == rb, value
    steps = [
        m["step"]
        for m in _lines(two / "grid.ratio=1.0" / "train" / "blank" / "metrics.jsonl")
        if "event" not in m
    ]
    assert steps == list(range(1, 7))  # resumed from its checkpoint, no step twice
    assert json.loads((two / "sweep.json").read_text())["finished"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, key",
    [
        (["run", "--config", "ratio-sweep", "--set", "grid.ratios=[0.5,1.0]"], "grid.ratio"),
        (["sweep", "train.beta=0.0,0.1"], "train.beta"),
    ],
)
def test_a_sweep_on_two_local_processes_gives_one_process_cells(tmp_path, command, key):
    """A config sweep (`run --config ratio-sweep`, lab 3) and the sweep command on a 2-core CPU
    start two processes, which share each value's grid in turn: every value folder's results
    equal one process's, and the sweep's files are written once."""
    sets = ["grid.train_conditions=[none,blank]", "grid.eval_conditions=[none,blank]"]
    base = [*command, "--quick", *(a for s in sets for a in ("--set", s))]
    one, two = tmp_path / "one", tmp_path / "two"
    a = _run([*base, "--out", str(one), "--set", "grid.processes=1"])
    assert a.returncode == 0, a.stderr[-3000:]
    b = _run([*base, "--out", str(two), "--set", "grid.processes=2"])
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-3000:]
    assert "2 processes on this machine's cores" in b.stderr and f"for each {key}" in b.stderr
    sa, sb = (json.loads((d / "sweep.json").read_text()) for d in (one, two))
    for value in sa["runs"]:
        ra, rb = (json.loads((d / value / "results.json").read_text()) for d in (one, two))
        ra.pop("timing"), rb.pop("timing")
        assert ra == rb, value
        assert not list((two / value).glob(".hallucue.rank*"))
    assert sb["finished"] and sa["shared"] == sb["shared"]  # shared models computed once
    assert (two / "report.md").is_file() and (two / "report.html").is_file()
