"""`hallucue-mlx export easyr1`: the exported files keep EasyR1's contract (as read in
hiyouga/EasyR1: verl/utils/dataset.py, verl/workers/reward/function.py, examples/config.yaml) and
carry our experiment unchanged: the corrupted rows are the ones our training corrupts, the prompt
renders to ours, the reward file scores as rewards.score does, standalone."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import bench_rows
import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.config import load_config, prompt_template, train_config_for
from hallucue_mlx.corrupt import (
    DEFAULT_FILL,
    donor_map,
    remove_text,
    replace_image,
    selected_ids,
)
from hallucue_mlx.data.item import Item
from hallucue_mlx.evaluate import Decoding, condition_records
from hallucue_mlx.export.easyr1 import (
    ANSWER_KEY,
    IMAGE_KEY,
    PROMPT_KEY,
    ExportOptions,
    batch_sizes,
    export_easyr1,
)
from hallucue_mlx.grid import load_spec
from hallucue_mlx.models.load import load_model
from hallucue_mlx.prompts import build_prompt, problem_text
from hallucue_mlx.rewards import RewardConfig, score
from hallucue_mlx.train import corrupted_pool

jinja2 = pytest.importorskip("jinja2")

# The keys of EasyR1's examples/config.yaml, plus worker.reward.reward_function_kwargs (a field of
# verl/workers/reward/config.py's RewardConfig). EasyR1 merges the file over its dataclasses with
# OmegaConf, so any other key would be refused.
EASYR1_KEYS = {
    *(
        f"data.{k}"
        for k in (
            "train_files val_files prompt_key answer_key image_key video_key image_dir video_fps "
            "max_prompt_length max_response_length rollout_batch_size mini_rollout_batch_size "
            "val_batch_size format_prompt override_chat_template shuffle seed min_pixels "
            "max_pixels filter_overlong_prompts"
        ).split()
    ),
    *(
        f"algorithm.{k}"
        for k in (
            "adv_estimator disable_kl use_kl_loss kl_penalty kl_coef online_filtering "
            "filter_key filter_low filter_high"
        ).split()
    ),
    *(
        f"worker.actor.{k}"
        for k in (
            "global_batch_size micro_batch_size_per_device_for_update "
            "micro_batch_size_per_device_for_experience max_grad_norm padding_free "
            "dynamic_batching ulysses_size model.model_path "
            "model.enable_gradient_checkpointing model.trust_remote_code "
            "model.freeze_vision_tower model.lora.rank model.lora.alpha "
            "model.lora.target_modules model.lora.exclude_modules optim.lr optim.weight_decay "
            "optim.strategy optim.lr_warmup_ratio fsdp.enable_full_shard fsdp.enable_cpu_offload "
            "fsdp.enable_rank0_init offload.offload_params offload.offload_optimizer"
        ).split()
    ),
    *(
        f"worker.rollout.{k}"
        for k in (
            "n temperature top_p limit_images gpu_memory_utilization enforce_eager "
            "enable_chunked_prefill tensor_parallel_size disable_tqdm val_override_config"
        ).split()
    ),
    "worker.ref.fsdp.enable_full_shard",
    "worker.ref.fsdp.enable_cpu_offload",
    "worker.ref.fsdp.enable_rank0_init",
    "worker.ref.offload.offload_params",
    "worker.reward.reward_function",
    "worker.reward.reward_function_kwargs",
    *(
        f"trainer.{k}"
        for k in (
            "total_epochs max_steps project_name experiment_name logger nnodes n_gpus_per_node "
            "max_try_make_batch val_freq val_before_train val_only val_generations_to_log "
            "save_freq save_limit save_model_only save_checkpoint_path load_checkpoint_path "
            "find_last_checkpoint"
        ).split()
    ),
}
LAB_SETS = ["data.train.n=12", "data.eval=[{name: synth, split: test, n: 8}]"]


def _dotted(d: dict, pre: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("val_override_config", "reward_function_kwargs"):
            out |= _dotted(v, f"{pre}{k}.")
        else:
            out.add(pre + k)
    return out


def _decode(cell: dict) -> Image.Image:
    return Image.open(io.BytesIO(cell["bytes"])).convert("RGB")


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _configs(out: Path) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((out / "configs").glob("*.yaml"))}


def _train_items(cfg) -> list[Item]:
    t = cfg.data.train
    return load_spec(t, t.split or "train", "data.train", cfg.data.seed)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The default lab config (embedded synth), exported through the command line."""
    out = tmp_path_factory.mktemp("lab") / "easyr1"
    argv = ["export", "easyr1", "--out", str(out)] + [a for s in LAB_SETS for a in ("--set", s)]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    return load_config(None, LAB_SETS), out


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The paper preset on the local Geometry3K fixture (train; the paper's validation on test),
    half the items corrupted, with LoRA."""
    root = tmp_path_factory.mktemp("paper")
    g3k = bench_rows.geometry3k.build(root)
    sets = [
        f"data.train.path={g3k}",
        "data.train.n=null",
        f"data.eval=[{{name: geometry3k, split: test, path: {g3k}}}]",
        "grid.ratio=0.5",
    ]
    cfg = load_config("paper-qwen25vl-3b", sets)
    out = root / "easyr1"
    export_easyr1(cfg, out, ExportOptions(lora_rank=16))
    return cfg, out


@pytest.fixture(scope="module", params=["lab", "paper"])
def export(request):
    return request.getfixturevalue(request.param)


def _load_reward(path: Path):
    # as verl/workers/reward/function.py does: a module from the file's path
    spec = importlib.util.spec_from_file_location("custom_reward_fn", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_reward_fn"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("custom_reward_fn", None)
    return module


# ================================================================ data files


def test_parquet_columns_are_what_the_configs_name(export):
    cfg, out = export
    for conf in _configs(out).values():
        d = conf["data"]
        for f in (d["train_files"], d["val_files"]):
            table = pq.read_table(f)
            assert {d["prompt_key"], d["answer_key"], d["image_key"]} <= set(table.column_names)
            assert (d["prompt_key"], d["answer_key"], d["image_key"]) == (
                PROMPT_KEY,
                ANSWER_KEY,
                IMAGE_KEY,
            )
            # datasets' Image feature: what EasyR1's load_dataset("parquet", ...) decodes
            features = datasets.Features.from_arrow_schema(table.schema)
            assert isinstance(features[IMAGE_KEY].feature, datasets.Image)
    # read as EasyR1 reads it: load_dataset by extension, split "train"; images decode to PIL
    ds = datasets.load_dataset(
        "parquet", data_files=str(out / "data" / "train-blank.parquet"), split="train"
    )
    assert len(ds) == len(_train_items(cfg))
    assert all(isinstance(im, Image.Image) for r in ds for im in r[IMAGE_KEY])


def test_one_placeholder_per_image_and_the_prompt_renders_to_ours(export):
    cfg, out = export
    template = jinja2.Template((out / "format_prompt.jinja").read_text().strip())
    items = _train_items(cfg)
    v = cfg.data.eval[0]
    shown = {"val": load_spec(v, v.split, "data.eval", cfg.data.seed)}
    for cond in cfg.grid.train_conditions:
        tcfg = train_config_for(cfg, cond)
        pool = corrupted_pool(items, cond, tcfg.corruption_ratio, tcfg.seed)
        shown[f"train-{cond}"] = [it for it, _ in pool]
    for name, its in shown.items():
        rows = _rows(out / "data" / f"{name}.parquet")
        assert [r["id"] for r in rows] == [it.id for it in its]
        for r, it in zip(rows, its):
            assert len(r[IMAGE_KEY]) == 1 == r[PROMPT_KEY].count("<image>")
            assert r[PROMPT_KEY].startswith("<image>")
            # EasyR1 renders the problem, then splits at "<image>": the image first, then the
            # text our trainer prompts with
            parts = template.render(content=r[PROMPT_KEY]).split("<image>")
            assert parts == ["", build_prompt(it, prompt_template(cfg))]


def test_blank_rows_are_one_colour_of_the_original_size(export):
    cfg, out = export
    items = {it.id: it for it in _train_items(cfg)}
    ratio = train_config_for(cfg, "blank").corruption_ratio
    chosen = selected_ids(list(items), ratio, cfg.seed)
    rows = _rows(out / "data" / "train-blank.parquet")
    assert {r["id"] for r in rows if r["corruption"] == "blank"} == chosen
    for r in rows:
        img, orig = _decode(r[IMAGE_KEY][0]), items[r["id"]].image
        assert img.size == orig.size
        if r["id"] in chosen:
            assert {tuple(p) for p in np.asarray(img).reshape(-1, 3)} == {DEFAULT_FILL}
        else:
            assert np.array_equal(np.asarray(img), np.asarray(orig))


def test_random_rows_carry_the_donor_our_corruption_picks(export):
    cfg, out = export
    items = _train_items(cfg)
    by_id = {it.id: it for it in items}
    tcfg = train_config_for(cfg, "random")
    chosen = selected_ids(list(by_id), tcfg.corruption_ratio, tcfg.seed)
    donors = donor_map(items, tcfg.seed)
    for r in _rows(out / "data" / "train-random.parquet"):
        got = np.asarray(_decode(r[IMAGE_KEY][0]))
        it = by_id[r["id"]]
        if r["id"] not in chosen:
            assert np.array_equal(got, np.asarray(it.image)) and r["corruption"] == "none"
            continue
        want = replace_image(it.image, by_id[donors[r["id"]]].image)
        assert np.array_equal(got, np.asarray(want)), r["id"]
        assert not np.array_equal(got, np.asarray(it.image))
        # any other donor would show: the check tells donors apart
        other = next(i for i in sorted(by_id) if i not in (r["id"], donors[r["id"]]))
        assert not np.array_equal(got, np.asarray(replace_image(it.image, by_id[other].image)))


def test_text_removal_rows_are_remove_text_output(export):
    cfg, out = export
    items = {it.id: it for it in _train_items(cfg)}
    ratio = train_config_for(cfg, "text_removal").corruption_ratio
    chosen = selected_ids(list(items), ratio, cfg.seed)
    rows = _rows(out / "data" / "train-text_removal.parquet")
    assert any(r["changed"] for r in rows)
    for r in rows:
        it = items[r["id"]]
        new, changed, _ = remove_text(it) if r["id"] in chosen else (it, False, "")
        assert r[PROMPT_KEY] == "<image>" + problem_text(new)
        assert r["changed"] == changed
        assert np.array_equal(np.asarray(_decode(r[IMAGE_KEY][0])), np.asarray(it.image))


def test_clean_rows_and_validation_rows_are_the_items(export):
    cfg, out = export
    for r, it in zip(_rows(out / "data" / "train-none.parquet"), _train_items(cfg)):
        assert r["id"] == it.id and r[PROMPT_KEY] == "<image>" + problem_text(it)
        assert r["answer"] == it.answer and r["corruption"] == "none" and not r["changed"]
    v = cfg.data.eval[0]
    val = load_spec(v, v.split, "data.eval", cfg.data.seed)
    rows = _rows(out / "data" / "val.parquet")
    assert [r["id"] for r in rows] == [it.id for it in val]
    assert json.loads(rows[0][ANSWER_KEY])["answer"] == val[0].answer


# ================================================================ configs and launch script


def test_config_yaml_loads_names_existing_files_and_carries_the_recipe(export):
    cfg, out = export
    confs = _configs(out)
    assert sorted(confs) == sorted(cfg.grid.train_conditions)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["complete"] is True
    assert all((out / f).is_file() for f in manifest["files"])
    for cond, c in confs.items():
        assert _dotted(c) == EASYR1_KEYS, _dotted(c) ^ EASYR1_KEYS
        d, w = c["data"], c["worker"]
        for f in (d["train_files"], d["val_files"], d["format_prompt"]):
            assert Path(f).is_file(), f
        assert d["train_files"].endswith(f"train-{cond}.parquet")
        reward_path, fn = w["reward"]["reward_function"].rsplit(":", 1)
        assert Path(reward_path).is_file() and fn == "compute_score"
        assert w["reward"]["reward_function_kwargs"] == {
            "accuracy_weight": cfg.train.accuracy_weight,
            "format_weight": cfg.train.format_weight,
        }
        assert (w["rollout"]["n"], w["rollout"]["temperature"]) == (
            cfg.train.num_generations,
            cfg.train.temperature,
        )
        assert c["algorithm"]["kl_coef"] == cfg.train.beta
        assert c["algorithm"]["kl_penalty"] == "low_var_kl" and c["algorithm"]["use_kl_loss"]
        assert (d["min_pixels"], d["max_pixels"]) == (262144, 4194304)
        assert c["trainer"]["total_epochs"] == 15
        assert w["actor"]["model"]["model_path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
        # EasyR1's batch checks, and its loader drops an incomplete last batch
        rollout, global_ = d["rollout_batch_size"], w["actor"]["global_batch_size"]
        assert 1 <= rollout <= len(_rows(Path(d["train_files"])))
        assert rollout % global_ == 0 and (rollout * w["rollout"]["n"]) % 2 == 0
    actor = next(iter(confs.values()))["worker"]["actor"]
    if cfg.model.id == "hallucue-tiny":  # the lab export: full fine-tuning, the paper's lr
        assert actor["model"]["lora"]["rank"] == 0 and actor["optim"]["lr"] == 1e-6
    else:  # the paper preset: 5 rollouts at 0.7, LoRA asked for
        assert (cfg.train.num_generations, cfg.train.temperature) == (5, 0.7)
        assert actor["model"]["lora"]["rank"] == 16 and actor["optim"]["lr"] == 1e-5


def test_batch_sizes_fit_easyr1_checks():
    assert batch_sizes(2101, 5) == (512, 128)  # Geometry3K train: EasyR1's example sizes
    for n_rows in (1, 3, 7, 75, 150, 600):
        for rollouts in (2, 5, 8):
            r, g = batch_sizes(n_rows, rollouts)
            assert 1 <= r <= n_rows and r % g == 0 and g <= 128
            assert (r * rollouts) % 2 == 0 or r == 1


def test_launch_script_runs_each_condition_with_its_files(lab, tmp_path):
    _, out = lab
    fake = tmp_path / "fake"
    (fake / "verl" / "trainer").mkdir(parents=True)
    (fake / "verl" / "__init__.py").write_text("")
    (fake / "verl" / "trainer" / "__init__.py").write_text("")
    log = tmp_path / "calls.jsonl"
    (fake / "verl" / "trainer" / "main.py").write_text(
        textwrap.dedent(
            f"""
            import json, sys
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(sys.argv[1:]) + "\\n")
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(fake),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    run = subprocess.run(
        ["bash", str(out / "launch.sh"), "blank", "random", "trainer.n_gpus_per_node=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    calls = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert len(calls) == 2
    for cond, argv in zip(("blank", "random"), calls):
        kv = dict(a.split("=", 1) for a in argv)
        assert Path(kv["config"]) == out / "configs" / f"{cond}.yaml"
        assert Path(kv["data.train_files"]) == out / "data" / f"train-{cond}.parquet"
        for key in ("config", "data.train_files", "data.val_files", "data.format_prompt"):
            assert Path(kv[key]).is_file()
        assert Path(kv["worker.reward.reward_function"].rsplit(":", 1)[0]).is_file()
        assert kv["trainer.n_gpus_per_node"] == "2" and argv[-1] == "trainer.n_gpus_per_node=2"
    bad = subprocess.run(
        ["bash", str(out / "launch.sh"), "nonsense"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown condition" in bad.stderr


def test_export_refuses_a_used_folder_and_a_custom_reward(lab, tmp_path):
    _, out = lab
    runner = CliRunner()
    sets = [a for s in LAB_SETS for a in ("--set", s)]
    again = runner.invoke(app, ["export", "easyr1", "--out", str(out), *sets])
    assert again.exit_code == 1 and "--force" in again.output
    (tmp_path / "mine.txt").write_text("x")
    other = runner.invoke(app, ["export", "easyr1", "--out", str(tmp_path), *sets])
    assert other.exit_code == 1 and "not empty" in other.output
    custom = runner.invoke(
        app,
        ["export", "easyr1", "--out", str(tmp_path / "new"), *sets]
        + ["--set", "train.reward_function=user_reward:reward_spaces"],
    )
    assert custom.exit_code == 2 and "built-in reward only" in custom.output
    assert not (tmp_path / "new").exists()
    one = [*sets, "--set", "grid.train_conditions=[blank]"]
    for extra in ([], ["--force"]):
        done = runner.invoke(
            app, ["export", "easyr1", "--out", str(tmp_path / "new"), *one, *extra]
        )
        assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "new" / "configs").iterdir()) == ["blank.yaml"]


# ================================================================ the reward file


def test_reward_file_is_grading_verbatim_and_imports_without_the_package(export):
    _, out = export
    text = (out / "reward.py").read_text()
    source = (Path(__file__).parent.parent / "hallucue_mlx" / "grading.py").read_text()
    assert text.endswith(source) and text.count("\n") - source.count("\n") <= 3
    probe = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, json, sys

        class NoPackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "hallucue_mlx":
                    raise ImportError("hallucue_mlx is not installed here")

        sys.meta_path.insert(0, NoPackage())
        spec = importlib.util.spec_from_file_location("custom_reward_fn", {str(out / "reward.py")!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["custom_reward_fn"] = module
        spec.loader.exec_module(module)
        gt = json.dumps({{"answer": "B", "answer_kind": "choice", "choices": ["1", "2"]}})
        inputs = [
            {{"response": "<think>t</think> \\\\boxed{{B}}", "response_length": 5, "ground_truth": gt}},
            {{"response": "\\\\boxed{{2}}", "response_length": 3, "ground_truth": gt}},
            {{"response": "<think>t</think> \\\\boxed{{A}}", "response_length": 5, "ground_truth": gt}},
            {{"response": "<think>t</think> \\\\boxed{{\\\\frac{{1}}{{2}}}}", "response_length": 9,
              "ground_truth": "0.5"}},
        ]
        print(json.dumps({{
            "type": module.REWARD_TYPE,
            "scores": module.compute_score(inputs, format_weight=0.1, accuracy_weight=0.9),
            "package": any(m.startswith("hallucue_mlx") for m in sys.modules),
        }}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["type"] == "batch" and got["package"] is False
    assert [s["accuracy"] for s in got["scores"]] == [1.0, 1.0, 0.0, 1.0]
    assert [s["format"] for s in got["scores"]] == [1.0, 0.0, 1.0, 1.0]
    assert [round(s["overall"], 6) for s in got["scores"]] == [1.0, 0.9, 0.1, 1.0]
    assert all(set(s) == {"overall", "format", "accuracy"} for s in got["scores"])


def _hand_made(it: Item) -> list[str]:
    """Responses in and around our answer format: right, wrong, unformatted, variants."""
    a = it.answer
    out = [
        f"<think>reasoning</think> \\boxed{{{a}}}",
        f"\\boxed{{{a}}}",
        f"<think>reasoning</think> the answer is {a}",
        f"<think>r</think> <answer>{a}</answer>",
        "<think>r</think> \\boxed{}",
        "<think>r</think> \\boxed{7.25}",
        f"<think>r</think> \\boxed{{{a} cm}}",
        f"<think>r</think> \\boxed{{x = {a}}}",
    ]
    if it.answer_kind == "choice" and it.choices:
        k = "ABCDEFGH".index(a)
        out += [
            f"<think>r</think> \\boxed{{({a})}}",
            f"<think>r</think> \\boxed{{{it.choices[k]}}}",
            "<think>r</think> \\boxed{A or B}",
            f"<think>r</think> \\boxed{{option {'B' if a == 'A' else 'A'}}}",
        ]
    if a == "2\\sqrt{3}":
        out += ["<think>r</think> \\boxed{\\sqrt{12}}", "<think>r</think> \\boxed{3.4641}"]
    if a.replace(".", "").isdigit():
        out += [f"<think>r</think> \\boxed{{\\frac{{{2 * float(a):g}}}{{2}}}}"]
    return out


def _assert_same_rewards(module, kwargs, pairs) -> tuple[int, int]:
    inputs = [{"response": resp, "response_length": 1, "ground_truth": gt} for resp, gt, _ in pairs]
    scores = module.compute_score(inputs, **kwargs)
    rc = RewardConfig(kwargs["accuracy_weight"], kwargs["format_weight"])
    right = 0
    for s, (resp, _, it) in zip(scores, pairs):
        ours = score(resp, it, rc)
        assert (s["overall"], s["accuracy"], s["format"]) == (
            ours.total,
            ours.accuracy,
            ours.format,
        ), (resp, it.answer)
        right += s["accuracy"] == 1.0
    return right, len(pairs) - right


def test_reward_file_scores_hand_made_responses_as_our_scorer(export):
    cfg, out = export
    module = _load_reward(out / "reward.py")
    kwargs = _configs(out)["none"]["worker"]["reward"]["reward_function_kwargs"]
    items = {it.id: it for it in _train_items(cfg)}
    pairs = [
        (resp, r[ANSWER_KEY], items[r["id"]])
        for r in _rows(out / "data" / "train-none.parquet")
        for resp in _hand_made(items[r["id"]])
    ]
    right, wrong = _assert_same_rewards(module, kwargs, pairs)
    assert right > 10 and wrong > 10
    # weights that do not sum to 1 reach the file as they reach rewards.score
    _assert_same_rewards(module, {"accuracy_weight": 1.0, "format_weight": 0.5}, pairs)


@pytest.mark.slow
def test_reward_file_scores_a_tiny_model_evaluation_as_our_scorer(lab):
    cfg, out = lab
    module = _load_reward(out / "reward.py")
    kwargs = _configs(out)["none"]["worker"]["reward"]["reward_function_kwargs"]
    rows = {r["id"]: r for r in _rows(out / "data" / "val.parquet")}
    v = cfg.data.eval[0]
    items = load_spec(v, v.split, "data.eval", cfg.data.seed)
    model, processor = load_model("hallucue-tiny")
    rc = RewardConfig(kwargs["accuracy_weight"], kwargs["format_weight"])
    decoding = Decoding(template=prompt_template(cfg), max_tokens=48, batch_size=8)
    records = []
    for cond in ("none", "blank"):
        records += condition_records(
            model,
            processor,
            items,
            cond,
            decoding,
            reward_fn=lambda text, it: score(text, it, rc),
        )
    by_id = {it.id: it for it in items}
    pairs = [(rec["response"], rows[rec["id"]][ANSWER_KEY], by_id[rec["id"]]) for rec in records]
    _assert_same_rewards(module, kwargs, pairs)
    scores = module.compute_score(
        [{"response": p[0], "response_length": 1, "ground_truth": p[1]} for p in pairs], **kwargs
    )
    assert [s["overall"] for s in scores] == [rec["reward"] for rec in records]
    assert any(rec["correct"] for rec in records) and any(rec["format_ok"] for rec in records)
