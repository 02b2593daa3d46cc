"""`hallucue-mlx export easyr1`: a run config's experiment in EasyR1's formats.

The paper's Table 1 came from EasyR1 (hiyouga/EasyR1: Ray + FSDP + vLLM) on GPUs. For every
training condition of a config's grid this writes what EasyR1 needs to run the same experiment at
that scale: the training set exactly as our training corrupts it, the clean validation set, the
prompt, the reward and a config; plus a launch script and a README with the way back to
hallucue-mlx for the evaluation under every corruption.

What EasyR1 expects, as read in hiyouga/EasyR1 (verl/utils/dataset.py, verl/trainer/config.py,
verl/trainer/data_loader.py, verl/trainer/ray_trainer.py, verl/trainer/main.py,
verl/workers/reward/function.py, verl/workers/reward/config.py, verl/workers/actor/config.py,
examples/config.yaml, examples/format_prompt/math.jinja, examples/reward_function/math.py,
examples/qwen2_5_vl_3b_geo3k_grpo.sh, examples/qwen3_vl_4b_geo3k_grpo_lora.sh,
scripts/model_merger.py):
- Data: `data.train_files` / `data.val_files` name a local file (read by datasets' load_dataset
  after its extension, split "train") or a hub dataset "name@split". A row's `prompt_key` column is
  the problem; it is rendered through the `data.format_prompt` jinja file (the problem is
  `content`; the file's text is stripped first), then split at each "<image>": the images of the
  row's `image_key` list (PIL images, {"bytes": ...} dicts or paths) go where the placeholders
  were, in order, each resized into [min_pixels, max_pixels] and converted to RGB. The
  `answer_key` column becomes "ground_truth"; other columns travel along untouched.
- Batches: the training loader drops its last incomplete batch (so rollout_batch_size must not
  exceed the number of rows); rollout_batch_size must be divisible by the actor's
  global_batch_size, and rollout_batch_size x rollout.n by micro_batch_size_per_device_for_experience.
- Reward: `worker.reward.reward_function` is "file.py:function", imported from its path (not as a
  package module); with REWARD_TYPE "batch" the function gets a list of {"response",
  "response_length", "ground_truth"} plus `reward_function_kwargs`, and returns one {"overall",
  "format", "accuracy"} per response. EasyR1's own math reward is (1 - format_weight) x accuracy +
  format_weight x format, format = `<think>.*</think>.*\\boxed{.*}`, with mathruler's grader.
- Config: `python3 -m verl.trainer.main config=FILE key=value ...` merges the YAML file, then the
  command-line keys, over its PPOConfig dataclasses (OmegaConf: an unknown key is an error). The
  format prompt and reward paths are made absolute against the working directory, the data paths
  are opened by the Ray workers: the files here name absolute paths.
- Checkpoints go to trainer.save_checkpoint_path/global_step_N/actor; `python3
  scripts/model_merger.py --local_dir .../actor` writes a Hugging Face model to .../actor/huggingface.

What is written (DIR/):
- data/train-<condition>.parquet: data.train's items, each as our GRPO run of that condition
  trains on it (`train.corrupted_pool`: the ratio's seeded choice, the seeded donor map of
  `random`, the blank fill, text removal), with the run config's seed.
- data/val.parquet: the config's first evaluation benchmark (data.eval[0] with its split, n and
  path), clean: what our runs' periodic evaluation draws from. The paper validated on Geometry3K's
  test split (EasyR1's geo3k examples do too): put it first, `--set 'data.eval=[{name: geometry3k,
  split: test}]'`.
- Columns: images (a list of one PNG, or empty; datasets' Image feature), problem ("<image>" for
  the image, then the question and choices as `prompts.problem_text` gives them, text removal
  applied), answer (the gold as written), ground_truth (`grading.gold_json`: answer, kind,
  options, unit, precision, id), id, corruption (the condition applied to the row; "none" where
  the ratio left it clean), changed (whether the corruption changed the row).
- format_prompt.jinja: `{{ content | trim }}`, a newline, our template's instruction: rendered, the
  text is `prompts.build_prompt`'s.
- reward.py: `grading.py` verbatim (it imports nothing from this package); its `compute_score` is
  EasyR1's batch reward, weighted as `rewards.score` weighs it, with the config's weights.
- configs/<condition>.yaml, launch.sh, README.md, export.json (what was exported, from what).

Settings: from the run config: data, conditions, ratio, seed, prompt template, reward weights,
rollouts per prompt, temperature, top_p, the KL coefficient, gradient clipping, the validation
temperature, top_p and samples per item (eval.temperature, eval.top_p, eval.samples_per_item). From the paper (our presets scale these down for a laptop): 15 epochs, learning rate
1e-6 with full fine-tuning, the KL term as a loss with the low-variance (k3) estimator, standard
GRPO (no filtering of groups), Qwen2.5-VL-3B-Instruct. With LoRA (lora_rank > 0): alpha 2 x rank
(our presets' ratio), learning rate 1e-5 (EasyR1's LoRA example; our paper preset's reasoning),
the vision tower left out (vLLM serves no vision LoRA). The rest is EasyR1's example config.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import datasets
import yaml
from PIL import Image

from hallucue_mlx import atomic, grading
from hallucue_mlx.config import ConfigError, RunConfig, prompt_template, to_dict, train_config_for
from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.data.bench import get_adapter
from hallucue_mlx.data.item import Item
from hallucue_mlx.data.subset import SubsetManifest
from hallucue_mlx.grid import load_spec
from hallucue_mlx.prompts import TEMPLATES, problem_text
from hallucue_mlx.report.labels import model_label
from hallucue_mlx.runfolder import FILE, TEMP, clear_owned
from hallucue_mlx.train import corrupted_pool

# The column names the exported configs give EasyR1 (data.prompt_key / answer_key / image_key).
PROMPT_KEY = "problem"
ANSWER_KEY = "ground_truth"
IMAGE_KEY = "images"
IMAGE_PLACEHOLDER = "<image>"
COLUMNS = (IMAGE_KEY, PROMPT_KEY, "answer", ANSWER_KEY, "id", "corruption", "changed")

PAPER_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
PAPER_EPOCHS = 15
PAPER_LR = 1.0e-6  # full fine-tuning
LORA_LR = 1.0e-5
# EasyR1's example config: the largest batches, and the experience micro-batch they must divide.
MAX_ROLLOUT_BATCH = 512
MAX_GLOBAL_BATCH = 128
EXPERIENCE_MICRO_BATCH = 2

EXPORT_FILE = "export.json"
REWARD_FILE = "reward.py"
FORMAT_FILE = "format_prompt.jinja"
LAUNCH_FILE = "launch.sh"


class ExportError(RuntimeError):
    """The output folder cannot take an export; the message says what to do."""


@dataclass(frozen=True)
class ExportOptions:
    """What the run config does not say: the PyTorch model EasyR1 trains, LoRA or not."""

    model: str = PAPER_MODEL
    lora_rank: int = 0  # 0: full fine-tuning, as in the paper


@dataclass
class ExportResult:
    """Where the export went and what is in it."""

    out: Path
    conditions: tuple[str, ...]
    n_train: int
    n_val: int
    changed: dict[str, int]  # condition -> training rows its corruption changed
    files: list[str] = field(default_factory=list)  # relative to out


# ================================================================ rows and parquet files


def _png(image: Image.Image) -> dict[str, Any]:
    """One image as datasets' Image feature stores it: lossless PNG bytes, so EasyR1 decodes the
    pixels our runs use."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def row(item: Item, corruption: str = "none", changed: bool = False) -> dict[str, Any]:
    """One EasyR1 row of an item (already corrupted as it is to be shown)."""
    images = [] if item.image is None else [item.image]
    return {
        IMAGE_KEY: [_png(im) for im in images],
        PROMPT_KEY: IMAGE_PLACEHOLDER * len(images) + problem_text(item),
        "answer": item.answer,
        ANSWER_KEY: grading.gold_json(item),
        "id": item.id,
        "corruption": corruption,
        "changed": changed,
    }


def _features() -> datasets.Features:
    list_of = getattr(datasets, "List", None) or datasets.Sequence  # datasets < 4: Sequence
    text = datasets.Value("string")
    return datasets.Features(
        {
            IMAGE_KEY: list_of(datasets.Image()),
            PROMPT_KEY: text,
            "answer": text,
            ANSWER_KEY: text,
            "id": text,
            "corruption": text,
            "changed": datasets.Value("bool"),
        }
    )


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    """Rows as one parquet file with datasets' feature metadata (images decode to PIL)."""
    columns = {c: [r[c] for r in rows] for c in COLUMNS}
    ds = datasets.Dataset.from_dict(columns, features=_features())
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar per small file says nothing
    try:
        return atomic.write_with(path, lambda tmp: ds.to_parquet(str(tmp)))
    finally:
        if bars:
            datasets.enable_progress_bars()


def training_rows(items: list[Item], condition: str, ratio: float, seed: int) -> list[dict]:
    """The rows of one training condition: the items as `train.corrupted_pool` gives them."""
    out = []
    for it, rec in corrupted_pool(items, condition, ratio, seed):
        applied = rec is not None and rec.applied
        out.append(row(it, rec.corruption if applied else "none", bool(rec and rec.changed)))
    return out


# ================================================================ prompt, batches, configs


def format_prompt(template: str) -> str:
    """EasyR1's format_prompt file for one of our templates: rendered with the problem, the text
    is prompts.build_prompt's (the problem, a newline, the instruction)."""
    instruction = TEMPLATES[template]
    if any(tag in instruction for tag in ("{{", "{%", "{#")):
        instruction = "{% raw %}" + instruction + "{% endraw %}"
    return "{{ content | trim }}\n" + instruction + "\n"


def batch_sizes(n_rows: int, rollouts: int) -> tuple[int, int]:
    """(rollout_batch_size, global_batch_size): EasyR1's example 512 / 128 where the data allow;
    smaller sets get the largest sizes its checks accept (see the module docstring)."""
    rollout = min(MAX_ROLLOUT_BATCH, n_rows)
    while rollout > 1 and (rollout * rollouts) % EXPERIENCE_MICRO_BATCH:
        rollout -= 1
    rollout = max(rollout, 1)
    global_ = max(d for d in range(1, min(MAX_GLOBAL_BATCH, rollout) + 1) if rollout % d == 0)
    return rollout, global_


def experiment_name(condition: str) -> str:
    """hallucue_grpo, hallucue_grpo_bi, ...: the paper's model names."""
    return "hallucue_" + model_label(condition).lower().replace("-", "_")


@dataclass(frozen=True)
class _Paths:
    train: Path
    val: Path
    format_prompt: Path
    reward: Path
    checkpoints: Path


def _actor(cfg: RunConfig, options: ExportOptions, global_batch: int) -> dict[str, Any]:
    lora = options.lora_rank > 0
    return {
        "global_batch_size": global_batch,
        "micro_batch_size_per_device_for_update": 1,
        "micro_batch_size_per_device_for_experience": EXPERIENCE_MICRO_BATCH,
        "max_grad_norm": cfg.train.max_grad_norm,
        "padding_free": True,
        "dynamic_batching": True,
        "ulysses_size": 1,
        "model": {
            "model_path": options.model,
            "enable_gradient_checkpointing": True,
            "trust_remote_code": False,
            "freeze_vision_tower": False,
            "lora": {
                "rank": options.lora_rank,
                "alpha": 2 * options.lora_rank if lora else 64,
                "target_modules": "all-linear",
                "exclude_modules": ".*visual.*",
            },
        },
        "optim": {
            "lr": LORA_LR if lora else PAPER_LR,
            "weight_decay": 1.0e-2,
            "strategy": "adamw",
            "lr_warmup_ratio": 0.0,
        },
        "fsdp": {"enable_full_shard": True, "enable_cpu_offload": False, "enable_rank0_init": True},
        "offload": {"offload_params": True, "offload_optimizer": True},
    }


def easyr1_config(
    cfg: RunConfig, condition: str, paths: _Paths, n_train: int, options: ExportOptions
) -> dict[str, Any]:
    """The EasyR1 config (examples/config.yaml's keys) of one training condition."""
    t = cfg.train
    rollout_batch, global_batch = batch_sizes(n_train, t.num_generations)
    return {
        "data": {
            "train_files": str(paths.train),
            "val_files": str(paths.val),
            "prompt_key": PROMPT_KEY,
            "answer_key": ANSWER_KEY,
            "image_key": IMAGE_KEY,
            "video_key": "videos",
            "image_dir": None,
            "video_fps": 2.0,
            "max_prompt_length": 2048,
            "max_response_length": 2048,
            "rollout_batch_size": rollout_batch,
            "mini_rollout_batch_size": None,
            "val_batch_size": 1024,
            "format_prompt": str(paths.format_prompt),
            "override_chat_template": None,
            "shuffle": True,
            "seed": cfg.seed,
            # the config's image sizes where it sets them, else EasyR1's defaults
            "min_pixels": cfg.model.min_pixels or 262144,
            "max_pixels": cfg.model.max_pixels or 4194304,
            "filter_overlong_prompts": True,
        },
        "algorithm": {
            "adv_estimator": "grpo",
            "disable_kl": t.beta == 0,
            "use_kl_loss": t.beta > 0,
            "kl_penalty": "low_var_kl",
            "kl_coef": t.beta,
            "online_filtering": False,
            "filter_key": "overall",
            "filter_low": 0.01,
            "filter_high": 0.99,
        },
        "worker": {
            "actor": _actor(cfg, options, global_batch),
            "rollout": {
                "n": t.num_generations,
                "temperature": t.temperature,
                "top_p": t.top_p,
                "limit_images": 0,
                "gpu_memory_utilization": 0.6,
                "enforce_eager": False,
                "enable_chunked_prefill": False,
                "tensor_parallel_size": 2,
                "disable_tqdm": False,
                "val_override_config": {
                    "temperature": cfg.eval.temperature,
                    "top_p": cfg.eval.top_p,
                    "n": cfg.eval.samples_per_item,
                },
            },
            "ref": {
                "fsdp": {
                    "enable_full_shard": True,
                    "enable_cpu_offload": True,
                    "enable_rank0_init": True,
                },
                "offload": {"offload_params": False},
            },
            "reward": {
                "reward_function": f"{paths.reward}:compute_score",
                "reward_function_kwargs": {
                    "accuracy_weight": t.accuracy_weight,
                    "format_weight": t.format_weight,
                },
            },
        },
        "trainer": {
            "total_epochs": PAPER_EPOCHS,
            "max_steps": None,
            "project_name": "hallucue",
            "experiment_name": experiment_name(condition),
            "logger": ["console", "file"],
            "nnodes": 1,
            "n_gpus_per_node": 8,
            "max_try_make_batch": 20,
            "val_freq": 5,
            "val_before_train": True,
            "val_only": False,
            "val_generations_to_log": 3,
            "save_freq": 5,
            "save_limit": 3,
            "save_model_only": False,
            "save_checkpoint_path": str(paths.checkpoints),
            "load_checkpoint_path": None,
            "find_last_checkpoint": True,
        },
    }


def _config_text(cfg: RunConfig, condition: str, config: dict[str, Any]) -> str:
    ratio = cfg.grid.ratio if condition != "none" else 1.0
    head = [
        f"# EasyR1 config of {model_label(condition)} (training condition {condition!r}, ratio "
        f"{ratio:g}, seed {cfg.seed}), written by `hallucue-mlx export easyr1`.",
        "# Run: bash ../launch.sh " + condition + "   (or: python3 -m verl.trainer.main "
        "config=THIS_FILE [key=value ...])",
        "# From the run config: data, prompt, reward weights, rollout.n, temperature, top_p, "
        "kl_coef, max_grad_norm, validation temperature.",
        "# From the paper: total_epochs, lr (full fine-tuning 1e-6; LoRA 1e-5), low_var_kl as a "
        "loss, no group filtering. The rest: EasyR1's examples/config.yaml.",
        "# Paths are absolute; launch.sh passes them again relative to its own folder.",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


# ================================================================ launch script and README


def launch_script(conditions: tuple[str, ...]) -> str:
    """A bash script running EasyR1 once per condition (all, or those named); key=value arguments
    go to every run, after the config's own."""
    names = " ".join(conditions)
    cases = "\n".join(f"    {c}) exp={experiment_name(c)} ;;" for c in conditions)
    return f"""#!/usr/bin/env bash
# GRPO under each training condition of this export, with EasyR1 (hiyouga/EasyR1).
#   bash launch.sh                        every condition in turn: {names}
#   bash launch.sh blank random           only these
#   bash launch.sh trainer.n_gpus_per_node=2 worker.actor.model.model_path=/models/qwen
#                                         any EasyR1 key=value, passed to every run
# Needs EasyR1 installed (its verl package importable) and math-verify (pip install "math-verify>=0.7").
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
conditions=()
overrides=()
for arg in "$@"; do
  case "$arg" in
    *=*) overrides+=("$arg") ;;
    *) conditions+=("$arg") ;;
  esac
done
if [ ${{#conditions[@]}} -eq 0 ]; then conditions=({names}); fi
python3 -c "import verl" 2>/dev/null || {{
  echo "EasyR1 is not installed: git clone https://github.com/hiyouga/EasyR1 && pip install -e EasyR1" >&2
  exit 1
}}
python3 -c "import math_verify" 2>/dev/null || {{
  echo "the reward needs math-verify: pip install 'math-verify>=0.7'" >&2
  exit 1
}}
for cond in "${{conditions[@]}}"; do
  case "$cond" in
{cases}
    *) echo "unknown condition '$cond'; this export has: {names}" >&2; exit 2 ;;
  esac
  python3 -m verl.trainer.main \\
    config="$HERE/configs/$cond.yaml" \\
    data.train_files="$HERE/data/train-$cond.parquet" \\
    data.val_files="$HERE/data/val.parquet" \\
    data.format_prompt="$HERE/{FORMAT_FILE}" \\
    worker.reward.reward_function="$HERE/{REWARD_FILE}:compute_score" \\
    trainer.save_checkpoint_path="$HERE/checkpoints/$exp" \\
    ${{overrides[@]+"${{overrides[@]}}"}}
done
"""


def _readme(cfg: RunConfig, res: ExportResult, val_name: str, options: ExportOptions) -> str:
    t = cfg.data.train
    rows = "\n".join(
        f"| `{c}` | {model_label(c)} | `data/train-{c}.parquet` | {res.changed[c]} of "
        f"{res.n_train} | `configs/{c}.yaml` | `checkpoints/{experiment_name(c)}` |"
        for c in res.conditions
    )
    lora = (
        f"LoRA rank {options.lora_rank}, alpha {2 * options.lora_rank}, lr {_num(LORA_LR)}"
        if options.lora_rank
        else f"full fine-tuning, lr {_num(PAPER_LR)} (the paper's)"
    )
    return f"""# The Hallucination-as-Cue experiment, exported to EasyR1

Written by `hallucue-mlx export easyr1` (hallucue-mlx {_version()}); `export.json` records the run
config and the item ids.

- training data: {t.name}/{t.split or "train"}, {res.n_train} items; corruption ratio
  {cfg.grid.ratio:g}; seed {cfg.seed}
- validation: {val_name}, {res.n_val} items, clean
- model: `{options.model}`, {lora}
- reward: {cfg.train.accuracy_weight:g} x accuracy + {cfg.train.format_weight:g} x format; prompt
  template `{prompt_template(cfg)}`

| condition | model | training set | rows changed | config | checkpoints |
|---|---|---|---|---|---|
{rows}

Every training row is the item as hallucue-mlx's own GRPO run of that condition trains on it (the
same seeded choice of items, the same blank fill and donor images, the same text removal); blank
and random images are stored as PNG. Columns: `images`, `problem` (`<image>` then the question and
options), `answer`, `ground_truth` (the gold and what grading needs, as JSON), `id`, `corruption`,
`changed`. `format_prompt.jinja` adds the prompt's instruction; `reward.py` is hallucue-mlx's
grader as an EasyR1 batch reward function.

## 1. Train (GPU machine)

```bash
git clone https://github.com/hiyouga/EasyR1 && pip install -e EasyR1   # or EasyR1's docker image
pip install "math-verify>=0.7"        # the reward's grader; EasyR1 does not install it
bash launch.sh                        # each condition in turn; or: bash launch.sh blank
bash launch.sh trainer.n_gpus_per_node=2   # any EasyR1 key=value goes to every run
```

## 2. Merge a checkpoint into a Hugging Face model

```bash
python3 EasyR1/scripts/model_merger.py --local_dir checkpoints/EXPERIMENT/global_step_N/actor
# -> checkpoints/EXPERIMENT/global_step_N/actor/huggingface
```

## 3. Evaluate under every corruption with hallucue-mlx (back on the Mac)

```bash
hallucue-mlx eval --model checkpoints/EXPERIMENT/global_step_N/actor/huggingface \\
    --benchmark mathverse --corruption none,blank,random,text_removal --template {prompt_template(cfg)} \\
    --out evals/EXPERIMENT
```

mlx-vlm reads the Hugging Face folder directly (`python -m mlx_vlm.convert --hf-path DIR -q
--mlx-path DIR-4bit` makes a 4-bit copy). Evaluate the base model the same way for the reference row.
"""


def _num(x: float) -> str:
    """1e-06 -> 1e-6."""
    return f"{x:g}".replace("e-0", "e-")


def _version() -> str:
    try:
        return metadata.version("hallucue-mlx")
    except metadata.PackageNotFoundError:
        return "unknown"


# ================================================================ the export


def check_exportable(cfg: RunConfig) -> None:
    """Refuse what EasyR1 cannot be given: a custom reward function, a ratio sweep, no training."""
    if cfg.train.reward_function is not None:
        raise ConfigError(
            f"train.reward_function = {cfg.train.reward_function!r}: the EasyR1 export writes the "
            "built-in reward only; unset it (--set train.reward_function=null) or adapt reward.py",
            "train.reward_function",
        )
    if cfg.grid.ratios:
        raise ConfigError(
            "grid.ratios is a sweep; export one ratio at a time: --set grid.ratios=[] "
            "--set grid.ratio=R (with a different --out each)",
            "grid.ratios",
        )
    if not cfg.grid.train_conditions:
        raise ConfigError(
            "grid.train_conditions is empty: nothing to train", "grid.train_conditions"
        )


def export_tree() -> dict[str, Any]:
    """What an export writes (runfolder.clear_owned's pattern tree): the files named below, the
    parquet files of the known conditions in data/ and their configs in configs/."""
    top = (EXPORT_FILE, REWARD_FILE, FORMAT_FILE, LAUNCH_FILE, "README.md")
    return {
        **{name: FILE for name in top},
        "data": {
            "val.parquet": FILE,
            **{f"train-{c}.parquet": FILE for c in CORRUPTIONS},
            **TEMP,
        },
        "configs": {**{f"{c}.yaml": FILE for c in CORRUPTIONS}, **TEMP},
        **TEMP,
    }


def _prepare_out(out: Path, force: bool, say: Callable[[str], None] = print) -> None:
    """An empty or new folder, or a previous export (replaced with --force: only the files an
    export writes are removed, found by walking the folder; the user's files stay)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a folder for the export (--out DIR)")
    for name in ("data", "configs"):
        if (out / name).is_symlink() or ((out / name).exists() and not (out / name).is_dir()):
            raise ExportError(
                f"{out / name} is a link or a file, not a folder; the export writes its {name} "
                "there and never follows a link: move it away, or give a new --out"
            )
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not (out / EXPORT_FILE).is_file():
        raise ExportError(f"{out} is not empty and holds no export; give a new or empty --out")
    if not force:
        raise ExportError(f"{out} holds an earlier export; pass --force to replace it")
    kept = clear_owned(out, export_tree())
    if kept:
        say(f"--force cleared the earlier export in {out} and kept: {', '.join(kept[:12])}")


def _write(out: Path, rel: str, text: str, files: list[str], mode: int | None = None) -> Path:
    path = atomic.write_text(out / rel, text)
    if mode is not None:
        path.chmod(mode)
    files.append(rel)
    return path


def export_easyr1(
    cfg: RunConfig,
    out: str | Path,
    options: ExportOptions | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Write the EasyR1 export of `cfg` into `out` (see the module docstring)."""
    options = options or ExportOptions()
    if options.lora_rank < 0:
        raise ConfigError(f"lora rank {options.lora_rank} is invalid; valid: 0 (full) or >= 1")
    check_exportable(cfg)
    say = log or (lambda _msg: None)
    out = Path(out).resolve()
    tspec, vspec = cfg.data.train, cfg.data.eval[0]
    tsplit = tspec.split or "train"
    vsplit = vspec.split or get_adapter(vspec.name).default_split
    items = load_spec(tspec, tsplit, "data.train", cfg.data.seed)
    val_items = load_spec(vspec, vsplit, f"data.eval.{vspec.name}", cfg.data.seed)
    if not items or not val_items:
        raise ExportError(f"no items in {tspec.name}/{tsplit} or {vspec.name}/{vsplit}")
    _prepare_out(out, force, say)
    # marks the folder as an export at once: an interrupted one is replaced with --force
    atomic.write_json(out / EXPORT_FILE, {"hallucue_mlx": _version(), "complete": False})
    (out / "data").mkdir(exist_ok=True)
    (out / "configs").mkdir(exist_ok=True)
    conditions = tuple(dict.fromkeys(cfg.grid.train_conditions))
    res = ExportResult(out, conditions, len(items), len(val_items), {})
    for cond in conditions:
        tcfg = train_config_for(cfg, cond)
        rows = training_rows(items, cond, tcfg.corruption_ratio, tcfg.seed)
        res.changed[cond] = sum(r["changed"] for r in rows)
        write_parquet(rows, out / "data" / f"train-{cond}.parquet")
        res.files.append(f"data/train-{cond}.parquet")
        say(f"{cond}: {len(rows)} training rows, {res.changed[cond]} changed by the corruption")
    write_parquet([row(it) for it in val_items], out / "data" / "val.parquet")
    res.files.append("data/val.parquet")
    say(f"validation: {len(val_items)} clean rows of {vspec.name}/{vsplit}")
    source = Path(grading.__file__).read_text(encoding="utf-8")
    header = (
        f"# EasyR1 reward function of a hallucue-mlx export: hallucue_mlx/grading.py of "
        f"hallucue-mlx {_version()}, verbatim.\n# worker.reward.reward_function: "
        f"{REWARD_FILE}:compute_score (REWARD_TYPE 'batch'). Needs sympy and math-verify; "
        "imports nothing from hallucue_mlx.\n"
    )
    _write(out, REWARD_FILE, header + source, res.files)
    _write(out, FORMAT_FILE, format_prompt(prompt_template(cfg)), res.files)
    for cond in conditions:
        paths = _Paths(
            train=out / "data" / f"train-{cond}.parquet",
            val=out / "data" / "val.parquet",
            format_prompt=out / FORMAT_FILE,
            reward=out / REWARD_FILE,
            checkpoints=out / "checkpoints" / experiment_name(cond),
        )
        config = easyr1_config(cfg, cond, paths, len(items), options)
        _write(out, f"configs/{cond}.yaml", _config_text(cfg, cond, config), res.files)
    _write(out, LAUNCH_FILE, launch_script(conditions), res.files, mode=0o755)
    val_name = f"{vspec.name}/{vsplit}"
    _write(out, "README.md", _readme(cfg, res, val_name, options), res.files)
    manifest = {
        "hallucue_mlx": _version(),
        "complete": True,
        "config": to_dict(cfg),
        "model": options.model,
        "lora_rank": options.lora_rank,
        "prompt_template": prompt_template(cfg),
        "train": SubsetManifest.of(items, tspec.name, tsplit, cfg.data.seed, tspec.n).to_dict(),
        "val": SubsetManifest.of(val_items, vspec.name, vsplit, cfg.data.seed, vspec.n).to_dict(),
        "conditions": {c: {"rows": len(items), "changed": res.changed[c]} for c in conditions},
        "files": sorted([*res.files, EXPORT_FILE]),
    }
    atomic.write_json(out / EXPORT_FILE, manifest, indent=1)
    res.files.append(EXPORT_FILE)
    return res
