"""Run configs: shipped files load and validate, bad keys and values name the key and the valid
choices, --set overrides, YAML round trip, the config hash and the quick version."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hallucue_mlx import config as C
from hallucue_mlx.config import ConfigError, RunConfig, from_dict, load_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(C.packaged_config_dir().glob("*.yaml"))


def test_every_shipped_config_loads_and_validates():
    names = {p.stem for p in SHIPPED}
    assert {"default", "paper-qwen25vl-3b", "qwen2vl-2b-4bit", "smolvlm"} <= names
    for p in SHIPPED:
        cfg = load_config(p)
        assert isinstance(cfg, RunConfig)
        C.validate(C.quick(cfg))  # the --quick version of every config is valid too
        # every key written in the file is one the loader knows (no silently ignored keys)
        assert from_dict(C.to_dict(cfg)) == cfg


def test_repo_configs_are_the_packaged_ones():
    repo = REPO / "configs"
    if not repo.exists():
        pytest.skip("not a source checkout")
    for p in SHIPPED:
        assert (repo / p.name).read_text() == p.read_text()


def test_default_is_the_embedded_offline_lab():
    cfg = load_config(None)
    assert cfg.model.id == "hallucue-tiny"
    assert cfg.data.train.name == "synth" and cfg.data.train.split == "train"
    assert [(s.name, s.split, s.n) for s in cfg.data.eval] == [("synth", "test", 600)]
    assert cfg.train.prompt_template == "short-decline"
    assert cfg.grid.train_conditions == ["none", "blank", "random", "text_removal"]
    assert cfg.grid.eval_conditions == ["none", "blank", "random", "text_removal"]
    assert cfg.grid.include_base


def test_paper_config_has_the_paper_settings():
    cfg = load_config("paper-qwen25vl-3b")  # a shipped config by name
    assert cfg.model.id == "mlx-community/Qwen2.5-VL-3B-Instruct-4bit"
    assert cfg.data.train.name == "geometry3k"
    assert [s.name for s in cfg.data.eval] == ["mathverse", "mathvista", "mathvision", "wemath"]
    t = cfg.train
    assert (t.prompt_template, t.num_generations, t.temperature, t.beta) == ("easyr1", 5, 0.7, 0.01)
    assert (t.accuracy_weight, t.format_weight) == (0.9, 0.1)
    tc = C.train_config_for(cfg, "blank")
    assert (tc.model, tc.benchmark, tc.corruption, tc.corruption_ratio) == (
        cfg.model.id,
        "geometry3k",
        "blank",
        1.0,
    )
    ec = C.eval_config_for(cfg)
    assert ec.template == "easyr1" and list(ec.conditions) == cfg.grid.eval_conditions


def test_every_key_has_help():
    helps = C.describe()
    assert "train.steps" in helps and "data.eval[].n" in helps and "eval.max_tokens" in helps
    missing = [k for k, h in helps.items() if not h.strip()]
    assert missing == []


@pytest.mark.parametrize(
    "data, must_name, must_list",
    [
        ({"trian": {}}, "'trian'", "model, data, train, eval, grid, output"),
        ({"train": {"stepz": 3}}, "'train.stepz'", "prompts_per_step"),
        ({"model": {"name": "x"}}, "'model.name'", "id, adapter, dtype"),
        ({"data": {"eval": [{"name": "synth", "splitt": "test"}]}}, "data.eval[0].splitt", "path"),
        ({"grid": {"eval_conditions": ["none", "foo"]}}, "grid.eval_conditions", "text_removal"),
        ({"model": {"dtype": "fp8"}}, "model.dtype", "bfloat16"),
        ({"data": {"eval": [{"name": "nope"}]}}, "data.eval[0].name", "mathverse"),
        ({"data": {"train": {"name": "synth", "split": "dev"}}}, "data.train.split", "train"),
        ({"train": {"prompt_template": "long"}}, "train.prompt_template", "easyr1"),
        ({"train": {"loss_type": "ppo", "prompt_template": "short"}}, "loss_type", "dr_grpo"),
    ],
)
def test_unknown_keys_and_bad_choices_name_the_key_and_the_valid_ones(data, must_name, must_list):
    with pytest.raises(ConfigError) as e:
        from_dict(data)
    assert must_name in str(e.value) and must_list in str(e.value)


@pytest.mark.parametrize(
    "key, where",
    [("corruption", "grid.train_conditions"), ("model", "model.id"), ("seed", "seed")],
)
def test_grid_owned_train_keys_point_to_where_they_are_set(key, where):
    with pytest.raises(ConfigError, match=f"train.{key} is set by the grid.*{where}"):
        from_dict({"train": {key: "blank" if key != "seed" else 1}})
    with pytest.raises(ConfigError, match="eval.conditions .*grid.eval_conditions"):
        from_dict({"eval": {"conditions": ["none"]}})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"steps": "many"}}, "train.steps"),
        ({"train": {"steps": 2.5}}, "train.steps"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate"),
        ({"grid": {"include_base": "yes"}}, "grid.include_base"),
        ({"grid": {"train_conditions": 3}}, "grid.train_conditions"),
        ({"model": {"id": 123}}, "model.id"),
        ({"data": {"eval": {"name": "synth"}}}, "data.eval"),
        ({"data": {"train": "synth"}}, "data.train"),
        ({"seed": None}, "seed"),
    ],
)
def test_wrong_types_name_the_key(data, key):
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')}\b.*expected"):
        from_dict(data)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"steps": 0}}, "steps"),
        ({"train": {"prompts_per_step": -1}}, "prompts_per_step"),
        ({"train": {"save_every": 0}}, "train.save_every"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate"),
        ({"train": {"num_generations": 1}}, "num_generations"),
        ({"data": {"eval": [{"name": "synth", "n": 0}]}}, "data.eval[0].n"),
        ({"data": {"train": {"name": "synth", "n": -5}}}, "data.train.n"),
        ({"data": {"train_slice_n": 0}}, "data.train_slice_n"),
        ({"eval": {"batch_size": 0}}, "eval.batch_size"),
        ({"eval": {"max_tokens": -5}}, "eval.max_tokens"),
        ({"grid": {"ratio": 0}}, "grid.ratio"),
        ({"grid": {"ratio": 1.5}}, "grid.ratio"),
        ({"train": {"max_minutes": 0}}, "train.max_minutes"),
    ],
)
def test_zero_and_negative_sizes_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", "[.]").replace("[0]", r"\[0\]")):
        from_dict(data)


def test_empty_grids_are_refused():
    with pytest.raises(ConfigError, match="grid.eval_conditions"):
        from_dict({"grid": {"eval_conditions": []}})
    with pytest.raises(ConfigError, match="nothing to run"):
        from_dict({"grid": {"train_conditions": [], "include_base": False}})
    with pytest.raises(ConfigError, match="data.eval is empty"):
        from_dict({"data": {"eval": []}})
    with pytest.raises(ConfigError, match="model.adapter.*evaluation-only"):
        from_dict({"model": {"adapter": "some/adapter"}})
    from_dict({"model": {"adapter": "some/adapter"}, "grid": {"train_conditions": []}})


def test_set_overrides_parse_yaml_values():
    cfg = load_config(
        None,
        [
            "train.steps=7",
            "train.learning_rate=1e-4",  # PyYAML reads this as text; it is still a number
            "grid.train_conditions=[none, blank]",
            "grid.eval_conditions=none,random",
            "data.eval.synth.n=50",  # a list entry by benchmark name
            "data.eval.0.split=test",  # ... or by index
            "model.adapter=null",
            "grid.include_base=false",
            "output.dir=somewhere",
        ],
    )
    assert cfg.train.steps == 7 and cfg.train.learning_rate == 1e-4
    assert cfg.grid.train_conditions == ["none", "blank"]
    assert cfg.grid.eval_conditions == ["none", "random"]
    assert cfg.data.eval[0].n == 50 and cfg.model.adapter is None
    assert cfg.grid.include_base is False and cfg.output.dir == "somewhere"
    # the rest of the file is untouched
    assert cfg.train.prompt_template == "short-decline"


def test_set_errors_name_the_key():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.steps"])
    with pytest.raises(ConfigError, match="'train.stepz'.*valid keys of train"):
        load_config(None, ["train.stepz=3"])
    with pytest.raises(ConfigError, match="no entry 'mathverse'.*synth"):
        load_config(None, ["data.eval.mathverse.n=3"])
    with pytest.raises(ConfigError, match="train.steps must be >= 1"):
        load_config(None, ["train.steps=0"])
    with pytest.raises(ConfigError, match="'bogus'.*valid keys"):
        load_config(None, ["bogus.x=1"])


def test_missing_config_file_lists_shipped_ones(tmp_path):
    with pytest.raises(ConfigError, match="not found.*default"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)


def test_yaml_dump_round_trips_with_comments():
    cfg = load_config("paper-qwen25vl-3b", ["train.steps=9"])
    text = C.dump_yaml(cfg)
    assert "# Training steps (rollout batches)." in text
    assert from_dict(yaml.safe_load(text)) == cfg
    assert from_dict(yaml.safe_load(C.dump_yaml(cfg, comments=False))) == cfg


def test_config_hash_follows_results_not_output_dir():
    a = load_config(None)
    assert C.config_hash(a) == C.config_hash(load_config(None, ["output.dir=elsewhere"]))
    assert C.config_hash(a) != C.config_hash(load_config(None, ["train.steps=3"]))
    assert C.config_hash(a) != C.config_hash(C.quick(a))


def test_auto_template_follows_the_model():
    tiny = from_dict({"train": {"prompt_template": "auto"}})
    assert C.eval_config_for(tiny).template == "short-decline"
    assert C.train_config_for(tiny, "none").prompt_template == "short-decline"
    big = from_dict({"train": {"prompt_template": "auto"}, "model": {"id": "org/some-vlm"}})
    assert C.eval_config_for(big).template == "easyr1"


def test_quick_keeps_every_cell_but_shrinks_the_work():
    cfg = load_config(None)
    q = C.quick(cfg)
    assert q.grid == cfg.grid
    assert [s.name for s in q.data.eval] == [s.name for s in cfg.data.eval]
    assert q.train.steps < cfg.train.steps and all(s.n <= 8 for s in q.data.eval)
    assert q.data.train_slice_n <= 4 and q.eval.max_tokens <= 48


def test_run_command_prints_the_resolved_config_and_names_bad_keys():
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["run", "--print-config", "--set", "train.steps=3"])
    assert res.exit_code == 0, res.output
    printed = yaml.safe_load(res.output)
    assert printed["train"]["steps"] == 3 and printed["model"]["id"] == "hallucue-tiny"
    res = runner.invoke(app, ["run", "--print-config", "--quick"])
    assert yaml.safe_load(res.output)["train"]["steps"] == 2
    res = runner.invoke(app, ["run", "--set", "train.stepz=3"])
    assert res.exit_code == 2
    assert "train.stepz" in res.output and "prompts_per_step" in res.output


# ---------------------------------------------------------------- one settings system


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("train.importance_sampling_level=seqence", "token, sequence"),
        ("train.loss_type=ppo", "grpo, dr_grpo, dapo, bnpo"),
        ("train.scale_rewards=std", "group, batch, none"),
        ("train.prompt_template=long", "easyr1"),
        ("grid.train_conditions=[none, blurry]", "none, blank, random, text_removal"),
        ("model.dtype=fp8", "auto, float32, bfloat16, float16"),
    ],
)
def test_an_unknown_enum_value_is_refused_with_the_allowed_ones(override, allowed):
    key, bad = override.split("=")
    bad = bad.strip("[]").split(", ")[-1]
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"{key}: {bad!r} is not valid; choose from" in str(e.value)
    assert allowed in str(e.value)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"corruption": "blurry"}, "train.corruption: 'blurry' is not valid; choose from none,"),
        ({"dtype": "fp8"}, "train.dtype: 'fp8' is not valid; choose from auto,"),
        ({"prompt_template": "long"}, "train.prompt_template: 'long' is not valid; choose from"),
        ({"epsilon": -0.5}, "train.epsilon must be >= 0, got -0.5"),
        ({"epsilon_high": -0.1}, "train.epsilon_high must be >= 0 or null, got -0.1"),
        ({"temperature": 0}, "train.temperature must be > 0, got 0"),
        ({"corruption_ratio": 1.5}, "train.corruption_ratio must be in [0, 1], got 1.5"),
    ],
)
def test_train_settings_outside_the_run_config_are_checked_the_same_way(settings, message):
    with pytest.raises(ConfigError) as e:
        C.build(C.TrainConfig, settings, "train")
    assert message in str(e.value)
    assert e.value.key == f"train.{next(iter(settings))}"


def test_epsilon_bounds_in_the_run_config():
    with pytest.raises(ConfigError, match="train.epsilon must be >= 0, got -0.5"):
        load_config(None, ["train.epsilon=-0.5"])
    assert load_config(None, ["train.epsilon_high=null"]).train.epsilon_high is None
    assert load_config(None, ["train.epsilon_high=0.28"]).train.epsilon_high == 0.28


def test_every_enum_like_setting_lists_its_choices():
    enums = {
        C.TrainConfig: {
            "dtype",
            "prompt_template",
            "corruption",
            "loss_type",
            "scale_rewards",
            "importance_sampling_level",
            "lora_targets",
        },
        C.EvalConfig: {"conditions", "template"},
        C.ModelSection: {"dtype"},
        C.GridSection: {"train_conditions", "eval_conditions", "parallel"},
    }
    for cls, names in enums.items():
        with_choices = {s.name for s in C.settings(cls) if s.choices}
        assert with_choices == names, cls.__name__


def test_no_two_configs_share_a_mutable_default():
    a = C.TrainConfig()
    a.lora_targets.append("lm_head")
    assert C.TrainConfig().lora_targets == list(C.DEFAULT_TARGETS)
    r = RunConfig()
    r.grid.eval_conditions.append("none")
    r.data.eval.append(C.BenchmarkSpec())
    r.train.lora_targets.clear()
    fresh = RunConfig()
    assert fresh.grid.eval_conditions == ["none", "blank", "random", "text_removal"]
    assert len(fresh.data.eval) == 1 and fresh.train.lora_targets == list(C.DEFAULT_TARGETS)


def test_importing_the_config_loads_no_mlx():
    import subprocess
    import sys

    code = (
        "import sys, hallucue_mlx.config as c; c.load_config(None); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_vlm')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def _help(command: str) -> str:
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"}, terminal_width=300)
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_flags_and_yaml_keys_come_from_the_same_fields():
    train_help, eval_help = _help("train"), _help("eval")
    renamed = {"corruption_ratio": "--ratio", "conditions": "--corruption"}
    renamed["samples_per_item"] = "--samples"
    for cls, text in ((C.TrainConfig, train_help), (C.EvalConfig, eval_help)):
        for s in C.settings(cls):
            flag = renamed.get(s.name, "--" + s.name.replace("_", "-"))
            assert f" {flag} " in text, (cls.__name__, flag)
            assert s.help.split()[0] in text
    # every train key the grid does not own is a YAML key and a --set path, with its help
    helps = C.describe()
    defaults = C.to_dict(C.TrainConfig())
    for s in C.settings(C.TrainConfig):
        if s.name in C.TRAIN_OWNED:
            continue
        assert helps[f"train.{s.name}"] == s.help
        value = yaml.safe_dump(defaults[s.name], default_flow_style=True).split("\n...")[0]
        cfg = load_config(None, [f"train.{s.name}={value.strip()}"])
        assert getattr(cfg.train, s.name) == getattr(C.TrainConfig(), s.name)


def test_the_eval_command_checks_its_flags_before_loading_anything():
    from typer.testing import CliRunner

    from hallucue_mlx.cli import app

    res = CliRunner().invoke(app, ["eval", "--corruption", "none,blurry"], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert "--corruption" in res.output and "'blurry' is not valid" in res.output
