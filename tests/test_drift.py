"""scripts/drift.py: every kept checkpoint of a training evaluated on validation next to the base,
and the null (the last update's per-layer sizes with random directions)."""

from __future__ import annotations

import json

import pytest

from hallucue_mlx.config import TrainConfig, build
from hallucue_mlx.train import train


def _trained(tiny_dir, out):
    cfg = build(
        TrainConfig,
        dict(
            steps=3,
            n_train=8,
            prompts_per_step=2,
            num_generations=3,
            max_completion_length=6,
            eval_every=0,
            save_every=1,
            keep_checkpoints=5,
            learning_rate=5e-2,
            warmup_steps=0,
            drop_zero_std_groups=False,
            reward_function="hallucue_mlx.rewards:random_reward",
        ),
        "train",
    )
    train(cfg, tiny_dir, out, quiet=True)
    return out


def test_checkpoints_then_random_directions_of_the_same_size(
    tiny_dir, tmp_path, capsys, load_script
) -> None:
    run = _trained(tiny_dir, tmp_path / "run")
    out = tmp_path / "drift.jsonl"
    argv = [str(run), "--n", "6", "--random", "2", "--fractions", "0.5,1", "--out", str(out)]
    argv += ["--set", f"model.id={tiny_dir}", "--set", "eval.max_tokens=6"]
    assert load_script("drift").main(argv) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["run"] for r in rows] == ["base", "run", "run", "run"] + [
        f"run random x{f} #{i}" for f in ("0.5", "1") for i in (0, 1)
    ]
    base, steps, nulls = rows[0], rows[1:4], rows[4:]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert base["size"] == 0 and base["change"] == 0 and base["n"] == 6
    assert all(r["size"] > 0 for r in steps)
    last = steps[-1]["size"]
    # each layer's random update is rescaled to the trained one's size (x the fraction)
    assert [r["size"] for r in nulls] == pytest.approx([last / 2] * 2 + [last] * 2, rel=1e-3)
    assert all(r["step"] == 3 for r in nulls)
    printed = capsys.readouterr().out
    assert printed.count("size") == len(rows)


def test_a_folder_without_checkpoints_is_named(tmp_path, load_script) -> None:
    with pytest.raises(SystemExit, match="keep_checkpoints"):
        load_script("drift").main([str(tmp_path)])


@pytest.mark.parametrize("bad", [["--fractions", "half"], ["--every", "0"], ["--random", "-1"]])
def test_bad_options_are_refused_by_name(tmp_path, load_script, capsys, bad) -> None:
    with pytest.raises(SystemExit) as e:
        load_script("drift").main([str(tmp_path), *bad])
    assert e.value.code == 2 and bad[0] in capsys.readouterr().err
