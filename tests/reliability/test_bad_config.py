"""Bad configs fail before anything runs, naming the key, what was wrong and what is valid:
unknown keys, wrong types, negative or zero sizes, in the run config (YAML and --set), in the
`train` command's settings and in the `eval` command's flags."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.config import (
    ConfigError,
    EvalConfig,
    TrainConfig,
    apply_overrides,
    build,
    load_config,
)


def _config_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    return str(e.value)


@pytest.mark.parametrize(
    "case, override, parts",
    [
        ("unknown key", "train.stepz=3", ["unknown key 'train.stepz'", "steps"]),
        ("unknown section", "trian.steps=3", ["unknown key 'trian'", "train"]),
        (
            "wrong type (text for an integer)",
            "train.steps=ten",
            ["train.steps", "integer", "'ten'"],
        ),
        (
            "wrong type (list for a number)",
            "train.learning_rate=[1]",
            ["train.learning_rate", "number"],
        ),
        (
            "wrong type (number for a boolean)",
            "grid.include_base=2",
            ["grid.include_base", "true or false"],
        ),
        ("zero steps", "train.steps=0", ["train.steps must be >= 1, got 0"]),
        ("negative subset size", "data.eval.synth.n=-5", ["data.eval[0].n must be >= 1"]),
        ("zero subset size", "data.train.n=0", ["data.train.n must be >= 1"]),
        ("zero save interval", "train.save_every=0", ["train.save_every must be >= 1"]),
        ("zero learning rate", "train.learning_rate=0", ["train.learning_rate must be > 0"]),
        (
            "negative eval batch size",
            "eval.batch_size=-2",
            ["eval.batch_size must be >= 1, got -2"],
        ),
        ("zero max_bad_steps", "train.max_bad_steps=0", ["train.max_bad_steps must be >= 1"]),
        (
            "unknown corruption",
            "grid.eval_conditions=[none, blurry]",
            ["grid.eval_conditions", "'blurry' is not valid", "text_removal"],
        ),
        (
            "misspelt importance sampling level",
            "train.importance_sampling_level=seqence",
            ["train.importance_sampling_level", "'seqence' is not valid", "token, sequence"],
        ),
        ("negative clip range", "train.epsilon=-0.5", ["train.epsilon must be >= 0, got -0.5"]),
    ],
)
def test_run_config_errors_name_the_key(said, case, override, parts):
    said(f"run config: {case} (--set {override})", _config_error([override]), *parts)


def test_a_yaml_file_with_an_unknown_key_names_file_and_key(tmp_path, said):
    p = tmp_path / "mine.yaml"
    p.write_text("train:\n  steps: 3\n  learnig_rate: 1e-4\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    said(
        "run config file with a misspelt key",
        str(e.value),
        str(p),
        "train.learnig_rate",
        "learning_rate",
    )


@pytest.mark.parametrize(
    "case, overrides, parts",
    [
        ("unknown setting", ["stepz=3"], ["unknown key 'train.stepz'", "steps"]),
        ("text for an integer", ["steps=ten"], ["train.steps: expected an integer, got 'ten'"]),
        ("a list for an integer", ["steps=[3]"], ["train.steps: expected an integer, got [3]"]),
        ("zero save_every", ["save_every=0"], ["train.save_every must be >= 1, got 0"]),
        ("negative n_train", ["n_train=-1"], ["train.n_train must be >= 1 or null, got -1"]),
        ("zero prompts_per_step", ["prompts_per_step=0"], ["train.prompts_per_step must be >= 1"]),
        (
            "unknown loss type",
            ["loss_type=ppo"],
            ["train.loss_type: 'ppo' is not valid", "grpo, dr_grpo, dapo, bnpo"],
        ),
    ],
)
def test_train_settings_errors(said, case, overrides, parts):
    with pytest.raises(ConfigError) as e:
        build(TrainConfig, apply_overrides({}, overrides, defaults={}), "train")
    said(f"train settings: {case} ({overrides})", str(e.value), *parts)


def test_eval_config_errors():
    with pytest.raises(ConfigError, match="eval.max_tokens must be >= 1, got 0") as e:
        EvalConfig(max_tokens=0)
    assert e.value.key == "eval.max_tokens"
    with pytest.raises(ConfigError, match=r"eval.ratio must be in \[0, 1\], got 1.5"):
        EvalConfig(ratio=1.5)


# ---------------------------------------------------------------- what the commands print


def _cli(args: list[str]):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def _text(output: str) -> str:
    """The message inside typer's error box, on one line."""
    for ch in "│╭╮╰╯─":
        output = output.replace(ch, " ")
    return " ".join(output.split())


def test_run_command_prints_the_key_and_exits_2(said):
    r = _cli(["run", "--set", "train.steps=-3"])
    assert r.exit_code == 2
    said(
        "`hallucue-mlx run --set train.steps=-3`",
        r.output.strip(),
        "error:",
        "train.steps must be >= 1",
    )


def test_train_command_names_the_setting(said):
    r = _cli(["train", "--set", "steps=ten"])
    assert r.exit_code == 2
    said(
        "`hallucue-mlx train --set steps=ten`",
        _text(r.output),
        "train.steps: expected an integer, got 'ten'",
    )


def test_train_command_names_the_flag_and_the_allowed_values(said):
    r = _cli(["train", "--loss-type", "ppo"])
    assert r.exit_code == 2
    said(
        "`hallucue-mlx train --loss-type ppo`",
        _text(r.output),
        "--loss-type",
        "'ppo' is not valid",
        "grpo, dr_grpo, dapo, bnpo",
    )


def test_eval_command_names_the_flag(said):
    r = _cli(["eval", "--batch-size", "0"])
    assert r.exit_code == 2
    said(
        "`hallucue-mlx eval --batch-size 0`",
        _text(r.output),
        "--batch-size",
        "eval.batch_size must be >= 1, got 0",
    )
