#!/usr/bin/env python
"""Our GRPO step against TRL's GRPOTrainer on PyTorch CPU, with the same fp32 weights.

    python -m hallucue_mlx.fastblas python benchmarks/bench_grpo_vs_trl.py
    python -m hallucue_mlx.fastblas python benchmarks/bench_grpo_vs_trl.py --quick
    python -m hallucue_mlx.fastblas python benchmarks/bench_grpo_vs_trl.py --models tiny \\
        --only 'tiny/*/max/*' --steps 5 --warmup 1

Needs the `bench-trl` extra (`pip install -e ".[bench-trl]"`: torch, transformers, trl, peft).
torchvision must NOT be installed: its Linux wheel is a CUDA build that breaks transformers'
imports on a CPU-only torch, and neither side needs it (the processors here are the PIL ones).

What runs. Each model (hallucue-tiny, the embedded model, and a ~30M-parameter Qwen2.5-VL built
offline by `build_30m` of benchmarks/bench_grpo_vs_mlx_vlm.py) is written a second time in Hugging
Face layout (`models.hf_layout.to_hf_layout`). First a parity check, with the functions of
scripts/parity_transformers.py: for every prompt the benchmark uses, the prompt token ids of our
encoder, of transformers' processor and of TRL's own tokenization path must be identical, and the
logits over the prompt plus a fixed continuation within --tol (1e-4); otherwise the script stops.
Then, per setting, each side trains in a fresh process (so peak RSS is that setting's):

  ours  hallucue_mlx.train.train (the `train` command's loop; one step = encode prompts, decode G
        completions per prompt, reward, advantages, [reference log-probs], one AdamW update),
        timed from its metrics.jsonl as benchmarks/bench_grpo_vs_mlx_vlm.py does.
  TRL   trl.GRPOTrainer on the Hugging Face copy (eager PyTorch on the CPU, fp32, no vLLM), LoRA
        by peft; a step is timed by a TrainerCallback (on_step_begin .. on_step_end).

Matched on both sides: the same synth prompts and images in the same order, G = 4 completions
per prompt, one optimizer update per step (per_device_train_batch_size = generation_batch_size =
prompts x G, num_iterations 1), LoRA r8, alpha 16, dropout 0 on q/k/v/o/gate/up/down of every
language-model decoder layer (the vision tower frozen), temperature 1.0 with no top-p, top-k or
min-p, the same max completion length, loss_type dapo, scale_rewards group, epsilon 0.2, AdamW
lr 1e-5 without weight decay, grad-norm clip 1.0, the k3 KL term unweighted by the importance
ratio (TRL's use_bias_correction_kl=False), the same banned tokens while sampling (ours:
forward.banned_token_ids; TRL: generation_kwargs suppress_tokens), the same reward (TRL is given
a reward function that calls our rewards.score: 0.9 x answer correct + 0.1 x format).
Gradient checkpointing is off on both sides (TRL's default is on; set explicitly), or on on both
with --grad-checkpoint.

The matrix: natural lengths and every completion forced to the maximum length (EOS banned on both
sides: our logit bias gets the EOS ids, TRL's generation suppresses them), beta 0 and 0.01,
1 and 4 prompts x G = 4, both models: 16 settings named like `tiny/1x4/natural/beta0`. The 30M
model has random weights, so its natural lengths are the maximum too.

BLAS. MLX on the Linux CPU runs its matmuls through numpy's OpenBLAS (bridged when hallucue_mlx is imported, or by
`python -m hallucue_mlx.fastblas`, which the script also arranges itself). PyTorch uses the BLAS it
was built with (`torch.__config__.show()`: MKL in the x86-64 PyPI wheels); its process is started
without the OpenBLAS preload, since libtorch_cpu exports the same BLAS symbols and would otherwise
call OpenBLAS. Both sides get --threads (default 2) threads: OPENBLAS_NUM_THREADS for MLX, torch.set_num_threads plus OMP/MKL_NUM_THREADS for PyTorch. The header prints both.

Columns. s/step (mean over the timed steps), rollout (ours: encode + decode + reward, the
`rollout_time` of metrics.jsonl; TRL: time inside GRPOTrainer._generate and _calculate_rewards),
train (step minus rollout: reference log-probs when beta > 0, the loss forward and backward, the
update; for TRL also its second pass of the images through the processor), generated tokens per
step (EOS included, as both count them), ms per generated token (step time / generated tokens,
then rollout time / generated tokens), peak RSS of the side's process (imports, model, data and
all steps), and the % of the fp32 GEMM ceiling: useful FLOPs / step time / the ceiling, where the
ceiling is the best of 5 timed 1024^3 fp32 matmuls measured in that process before and again
after training (the better of the two, so one disturbed measurement does not set it)
(MLX: backend.matmul_gflops, what `hallucue-mlx doctor` reports; PyTorch: the same product with
torch.matmul) and, with N the language model's matmul parameters (decoder layers + LM head; the
embedding lookup and the frozen vision tower are left out),

    useful FLOPs per step = 2 N (P + T)   [rollout: each prompt once, one forward per token]
                          + 6 N (P + T)   [loss forward + backward, the usual 3 x forward]
                          + 2 N (P + T)   [reference forward, only when beta > 0]

with P the step's prompt tokens (each prompt once) and T its generated tokens. With LoRA the
frozen weights need no weight gradient, so 3 x forward overstates the necessary backward by up to
a third; the formula is the same on both sides and does not change their ratio. The last line is
one JSON object, one entry per setting:

    {"tiny/1x4/natural/beta0": {"step_time_ratio": ours/TRL, "ms_per_token_ratio": ours/TRL,
                                "rollout_ms_per_token_ratio": ours/TRL}, ...}

ms_per_token_ratio is the one to read at natural lengths (the two sides sample different texts,
so their step lengths differ); in the forced settings both generate prompts x G x max tokens.

What cannot be matched exactly:
- The sampled texts: each side draws from its own random generator, so natural lengths and
  rewards differ between sides (hence the per-token ratio and the forced-length settings).
- Where each side spends the step is part of what is compared: ours prefills a prompt once and
  tiles its keys/values over its G completions (rollout and loss), runs the vision tower once per
  prompt and keeps the rollout's log-probs as the old policy's; TRL prefills every one of the
  prompts x G rows, runs the vision tower again in the loss forward, and (num_iterations 1) takes
  the detached current log-probs as the old policy's.
- Banned tokens: ours adds the logit bias in the loss forward too (the loss sees the sampling
  distribution); TRL suppresses them in generation only. With EOS banned the same holds for EOS.
- The LoRA A initialisation: both are uniform in +-1/sqrt(fan_in) with B = 0 (the same starting
  policy), but drawn by different generators. The learning-rate schedule: ours cosine (as in
  training runs), TRL constant; both at 1e-5, which does not change the time of a step.
- Our side's process imports torch whenever torch is installed (transformers, under mlx-vlm's
  processors, loads it), as here; its peak RSS includes that. The output notes it.
- Attention: TRL's model uses PyTorch's default (sdpa; --attn to change), ours MLX's fused
  attention; the parity check runs the same implementation as the benchmark.
- TRL's dataloader hands over a step's rows (decoding the dataset's PNG images) before
  on_step_begin, so that is outside its step time; ours reads images already decoded in memory.
- GRPOConfig fields this TRL version lacks are left out and listed in the notes.

Timings from a machine running other work are inflated; measure on an idle one. A shared or
virtual machine also drifts by 10-20% between minutes; --repeats R runs each setting's two sides
R times, alternating (ours, TRL, ours, ...), and reports each column's median over the R runs,
so a slow minute does not land on one side only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import gc
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
MODELS = ("tiny", "30m")
PROMPTS = (1, 4)
LENGTHS = ("natural", "max")
BETAS = (0.0, 0.01)
GROUP = 4
QUICK = "tiny/1x4/natural/beta0"
SIDES = ("ours", "trl")


# ---------------------------------------------------------------- the settings matrix


@dataclasses.dataclass(frozen=True)
class Setting:
    """One benchmark setting: a model, prompts x G per step, natural or forced length, beta."""

    model: str
    prompts: int
    group: int
    length: str  # "natural" or "max" (EOS banned on both sides)
    beta: float

    @property
    def key(self) -> str:
        return f"{self.model}/{self.prompts}x{self.group}/{self.length}/beta{self.beta:g}"


def settings_matrix(
    models: list[str] | tuple[str, ...] = MODELS,
    prompts: tuple[int, ...] = PROMPTS,
    lengths: tuple[str, ...] = LENGTHS,
    betas: tuple[float, ...] = BETAS,
    group: int = GROUP,
) -> list[Setting]:
    """Every combination, model by model (each model's settings run together)."""
    return [
        Setting(m, p, group, length, b)
        for m in models
        for p in prompts
        for length in lengths
        for b in betas
    ]


def select_settings(settings: list[Setting], only: list[str] | None) -> list[Setting]:
    """The settings whose key matches one of the glob patterns in `only` (all when None); a
    pattern that matches nothing is an error, so a typo does not silently bench nothing."""
    if not only:
        return list(settings)
    keys = [s.key for s in settings]
    for pattern in only:
        if not fnmatch.filter(keys, pattern):
            raise ValueError(f"--only {pattern!r} matches none of the settings: {', '.join(keys)}")
    return [s for s in settings if any(fnmatch.fnmatchcase(s.key, p) for p in only)]


# ---------------------------------------------------------------- FLOP and time accounting


def useful_flops(n_params: int, prompt_tokens: float, gen_tokens: float, beta: float) -> float:
    """Useful FLOPs of one GRPO step (module docstring): 2N(P+T) rollout + 6N(P+T) loss forward
    and backward + 2N(P+T) reference forward when beta > 0."""
    tokens = prompt_tokens + gen_tokens
    passes = 2 + 6 + (2 if beta > 0 else 0)
    return float(passes * n_params * tokens)


def pct_of_ceiling(flops: float, seconds: float, gflops: float) -> float:
    """Achieved FLOP rate as a percentage of the measured GEMM ceiling."""
    if seconds <= 0 or gflops <= 0:
        return float("nan")
    return 100.0 * flops / seconds / (gflops * 1e9)


def summarize(
    steps: list[dict[str, float]],
    prompt_tokens: list[int],
    n_params: int,
    beta: float,
    gflops: float,
) -> dict[str, float]:
    """Means over the timed steps. steps: per step {"step_s", "rollout_s", "tokens"};
    prompt_tokens: each timed step's prompt tokens (each prompt once)."""
    if not steps:
        raise ValueError("no timed steps to summarize")
    if len(prompt_tokens) != len(steps):
        raise ValueError(f"{len(steps)} steps but {len(prompt_tokens)} prompt-token counts")
    step_s = sum(s["step_s"] for s in steps)
    rollout_s = sum(s["rollout_s"] for s in steps)
    tokens = sum(s["tokens"] for s in steps)
    flops = sum(useful_flops(n_params, p, s["tokens"], beta) for s, p in zip(steps, prompt_tokens))
    n = len(steps)
    return {
        "step_s": step_s / n,
        "rollout_s": rollout_s / n,
        "train_s": (step_s - rollout_s) / n,
        "tokens": tokens / n,
        "ms_per_token": 1000.0 * step_s / max(tokens, 1),
        "rollout_ms_per_token": 1000.0 * rollout_s / max(tokens, 1),
        "pct_ceiling": pct_of_ceiling(flops, step_s, gflops),
    }


def ratios(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
    """ours / TRL for the JSON line (below 1: ours is faster)."""
    return {
        "step_time_ratio": round(ours["step_s"] / theirs["step_s"], 4),
        "ms_per_token_ratio": round(ours["ms_per_token"] / theirs["ms_per_token"], 4),
        "rollout_ms_per_token_ratio": round(
            ours["rollout_ms_per_token"] / theirs["rollout_ms_per_token"], 4
        ),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB. On Linux VmHWM of /proc/self/status:
    getrusage's ru_maxrss carries the parent's peak over into a child started by vfork + exec,
    as subprocess starts them."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(ln for ln in status if ln.startswith("VmHWM:")).split()[1]) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10  # bytes vs KiB


def torch_matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    """Best-of-`reps` GFLOPS of an n x n x n fp32 torch.matmul: backend.matmul_gflops for torch."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def torch_blas() -> str:
    """The BLAS PyTorch was built with, from torch.__config__.show()."""
    import torch

    shown = torch.__config__.show()
    info = next((p for p in shown.replace(",", "\n").split() if p.startswith("BLAS_INFO=")), "")
    lib = next((ln.strip(" -") for ln in shown.splitlines() if "Math Kernel Library" in ln), "")
    return (info.removeprefix("BLAS_INFO=") or "unknown") + (f" ({lib})" if lib else "")


# ---------------------------------------------------------------- helpers shared by both sides


BRIDGED = "numpy's OpenBLAS (bridged)"


def sibling(name: str) -> Any:
    """A script of this folder or of scripts/ as a module (neither is a package)."""
    if name in sys.modules:
        return sys.modules[name]
    path = HERE / f"{name}.py"
    if not path.exists():
        path = HERE.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def step_items(n_prompts: int, steps: int, seed: int) -> list:
    """The synth train items of a run, in order: step s uses items s*P .. s*P+P-1."""
    from hallucue_mlx.data.synth import load_synth

    return load_synth("train", n=n_prompts * steps, seed=seed)


def trl_config_kwargs(wanted: dict[str, Any], fields: set[str]) -> tuple[dict, list[str]]:
    """The GRPOConfig arguments this TRL version has, and the names it lacks (reported)."""
    return {k: v for k, v in wanted.items() if k in fields}, sorted(set(wanted) - fields)


def lora_target_regex(targets: tuple[str, ...]) -> str:
    """PEFT's full-match regex for our LoRA targets in the language model's decoder layers only
    (Qwen2.5-VL's vision blocks also have gate/up/down_proj; ours leave the vision tower frozen)."""
    return rf".*language_model\.layers\.\d+\..*\.({'|'.join(targets)})"


# ---------------------------------------------------------------- the two sides (child processes)


def run_ours(spec: dict) -> dict:
    """Our side of one setting: hallucue_mlx.train.train for warmup + steps steps."""
    from hallucue_mlx.backend import fast_blas_loaded, matmul_gflops, set_blas_threads

    set_blas_threads(spec["threads"])
    gflops = matmul_gflops(reps=5)
    from hallucue_mlx import forward
    from hallucue_mlx.config import TrainConfig, build
    from hallucue_mlx.models.load import load_model
    from hallucue_mlx.models.lora import lora_layers
    from hallucue_mlx.train import train

    s = spec["setting"]
    total = spec["warmup"] + spec["steps"]
    items = step_items(s["prompts"], total, spec["seed"])
    model, proc = load_model(spec["mlx_dir"], dtype="float32")
    if s["length"] == "max":
        # every EOS id of either side joins the banned tokens: the logit bias of the sampler (and
        # of the loss forward, which sees the sampling distribution), so every completion runs
        # to the maximum length
        banned = forward.banned_token_ids
        forward.banned_token_ids = lambda m, p: sorted(set(banned(m, p)) | set(spec["eos_ids"]))
    settings = dict(
        model=spec["mlx_dir"],
        steps=total,
        prompts_per_step=s["prompts"],
        num_generations=s["group"],
        max_completion_length=spec["max_tokens"],
        temperature=1.0,
        top_p=1.0,
        beta=s["beta"],
        loss_type="dapo",
        scale_rewards="group",
        epsilon=0.2,
        num_iterations=1,
        lora_rank=spec["rank"],
        lora_alpha=spec["alpha"],
        lora_dropout=0.0,
        learning_rate=1e-5,
        weight_decay=0.0,
        warmup_steps=0,
        max_grad_norm=1.0,
        grad_checkpoint=spec["grad_checkpoint"],
        eval_every=0,
        save_every=10**6,
        prompt_template=spec["template"],
        seed=spec["seed"],
    )
    cfg = build(TrainConfig, settings, "train")
    out = Path(spec["work"]) / "ours"
    train(
        cfg,
        None,
        out,
        quiet=True,
        model_and_processor=(model, proc),
        items=items,
        # the same prompts, in the same order, as TRL's unshuffled dataset
        indices_fn=lambda step, per, n, seed: [(step * per + i) % n for i in range(per)],
    )
    gflops = max(gflops, matmul_gflops(reps=5))  # the better of before and after training
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "event" not in r]
    return {
        "steps": [
            {
                "step_s": r["step_time"],
                "rollout_s": r["rollout_time"],
                "tokens": r["rollout_tokens"],
            }
            for r in recs
        ],
        "gflops": gflops,
        "blas": "OpenBLAS (preloaded)" if fast_blas_loaded() else "MLX's bundled reference BLAS",
        "lora_layers": len(lora_layers(model)),
        "torch_imported": "torch" in sys.modules,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_trl(spec: dict) -> dict:
    """TRL's side of one setting: GRPOTrainer for warmup + steps steps on the Hugging Face copy."""
    import torch

    torch.set_num_threads(spec["threads"])
    gflops = torch_matmul_gflops(reps=5)
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hallucue_mlx.backend import fast_blas_loaded
    from hallucue_mlx.prompts import build_prompt
    from hallucue_mlx.rewards import score

    s = spec["setting"]
    total = spec["warmup"] + spec["steps"]
    items = step_items(s["prompts"], total, spec["seed"])
    model = AutoModelForImageTextToText.from_pretrained(
        spec["hf_dir"], dtype=torch.float32, attn_implementation=spec["attn"]
    )
    processor = sibling("parity_transformers").hf_processor(Path(spec["hf_dir"]), spec["family"])
    # as GRPOTrainer sets them when it loads the processor itself: its prompts are left-padded,
    # and the processor's per-token fields (mm_token_type_ids) must line up with them
    processor.tokenizer.padding_side = processor.tokenizer.truncation_side = "left"
    # TRL's VLM format: a conversational prompt and an "image" column (TRL puts the image
    # before the text of the user turn, as our chat_text does)
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": build_prompt(it, spec["template"])}],
                "image": it.image,
                "item": i,
            }
            for i, it in enumerate(items)
        ]
    )

    def hallucue_reward(completions: list, item: list[int], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [score(t, items[i]).total for t, i in zip(texts, item)]

    suppress = list(spec["banned_ids"])
    if s["length"] == "max":
        suppress = sorted(set(suppress) | set(spec["eos_ids"]))
    batch = s["prompts"] * s["group"]
    wanted = dict(
        output_dir=str(Path(spec["work"]) / "trl"),
        max_steps=total,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        generation_batch_size=batch,
        num_generations=s["group"],
        num_iterations=1,
        max_completion_length=spec["max_tokens"],
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        generation_kwargs={"suppress_tokens": suppress},
        beta=s["beta"],
        loss_type="dapo",
        scale_rewards="group",
        epsilon=0.2,
        use_bias_correction_kl=False,
        mask_truncated_completions=False,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=spec["grad_checkpoint"],
        use_vllm=False,
        shuffle_dataset=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        log_completions=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=spec["seed"],
    )
    kwargs, missing = trl_config_kwargs(wanted, {f.name for f in dataclasses.fields(GRPOConfig)})
    config = GRPOConfig(**kwargs)
    peft_config = LoraConfig(
        r=spec["rank"],
        lora_alpha=spec["alpha"],
        lora_dropout=0.0,
        bias="none",
        target_modules=lora_target_regex(tuple(spec["lora_targets"])),
    )

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[hallucue_reward],
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[timer],
    )
    # TRL's own timings go only to wandb/mlflow/trackio: time its rollout by wrapping it
    rollout_s: dict[int, float] = {}

    def timed(fn):
        def inner(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                step = len(timer.times)
                rollout_s[step] = rollout_s.get(step, 0.0) + time.perf_counter() - t0

        return inner

    trainer._generate = timed(trainer._generate)
    trainer._calculate_rewards = timed(trainer._calculate_rewards)
    lora = sum(1 for n, _ in trainer.model.named_modules() if n.endswith("lora_A"))
    trainer.train()
    gflops = max(gflops, torch_matmul_gflops(reps=5))  # the better of before and after training
    lengths = [
        h["completions/mean_length"]
        for h in trainer.state.log_history
        if "completions/mean_length" in h
    ]
    if len(lengths) != len(timer.times):
        raise RuntimeError(
            f"TRL logged {len(lengths)} steps' completion lengths for {len(timer.times)} steps"
        )
    return {
        "steps": [
            {"step_s": t, "rollout_s": rollout_s.get(i, 0.0), "tokens": round(m * batch)}
            for i, (t, m) in enumerate(zip(timer.times, lengths))
        ],
        "gflops": gflops,
        "blas": torch_blas() + (" + OpenBLAS mapped" if fast_blas_loaded() else ""),
        "lora_layers": lora,
        "gradient_checkpointing": bool(config.gradient_checkpointing),
        "missing_config_fields": missing,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_main(side: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = run_ours(spec) if side == "ours" else run_trl(spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------- the parent: models, parity, runs


@dataclasses.dataclass
class ModelInfo:
    name: str
    mlx_dir: Path
    hf_dir: Path
    family: str
    template: str
    n_params: int  # the language model's matmul parameters (decoder layers + LM head)
    banned_ids: list[int]
    eos_ids: list[int]  # ours
    trl_eos_ids: list[int]  # what TRL stops on: generation_config's and the tokenizer's EOS
    prompt_tokens: list[int] = dataclasses.field(default_factory=list)  # per item, in order


def lm_matmul_params(model) -> int:
    """Parameters the language model multiplies every token by: its decoder layers and LM head
    (vocab x hidden, also when tied to the embedding); the embedding lookup is no matmul."""
    from mlx.utils import tree_flatten

    from hallucue_mlx.models import arch

    inner = arch.text_stack(model)
    layers = sum(v.size for layer in inner.layers for _, v in tree_flatten(layer.parameters()))
    hidden = inner.embed_tokens.weight.shape[1]
    return int(layers + arch.vocab_size(model) * hidden)


def prepare_model(name: str, work: Path) -> tuple[Path, Path]:
    """(MLX folder, Hugging Face folder) of one benchmark model."""
    from hallucue_mlx.models.hf_layout import to_hf_layout
    from hallucue_mlx.models.load import resolve_model_dir

    if name == "tiny":
        mlx_dir = Path(resolve_model_dir("hallucue-tiny"))
    else:
        mlx_dir = sibling("bench_grpo_vs_mlx_vlm").build_30m(work / "models" / "qwen2_5_vl-30m")
    return mlx_dir, to_hf_layout(mlx_dir, work / "models" / f"{name}-hf")


def parity(name: str, work: Path, items: list, args) -> ModelInfo:
    """Token ids (ours, transformers' processor, TRL's tokenization path) and logits (ours,
    transformers) on every benchmark prompt; raises SystemExit on any difference."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig
    from trl.data_utils import prepare_multimodal_messages

    from hallucue_mlx.forward import banned_token_ids
    from hallucue_mlx.models.load import family_of_config, load_model, read_config
    from hallucue_mlx.prompts import build_prompt, resolve_template
    from hallucue_mlx.rollout import eos_token_ids

    pt = sibling("parity_transformers")
    mlx_dir, hf_dir = prepare_model(name, work)
    family = family_of_config(read_config(mlx_dir), str(mlx_dir / "config.json"))
    template = resolve_template("auto", str(mlx_dir))
    model, processor = load_model(mlx_dir, dtype="float32")
    hf_model = AutoModelForImageTextToText.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation=args.attn
    ).eval()
    hf_proc = pt.hf_processor(hf_dir, family)
    tok = processor.tokenizer
    cont = pt._continuation(tok)
    gen_eos = GenerationConfig.from_pretrained(hf_dir).eos_token_id
    gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
    hf_tok_eos = hf_proc.tokenizer.eos_token_id
    info = ModelInfo(
        name=name,
        mlx_dir=mlx_dir,
        hf_dir=hf_dir,
        family=family,
        template=template,
        n_params=lm_matmul_params(model),
        banned_ids=banned_token_ids(model, processor),
        eos_ids=eos_token_ids(model, processor),
        trl_eos_ids=sorted(set(gen_eos) | ({hf_tok_eos} if hf_tok_eos is not None else set())),
    )
    worst = 0.0
    for it in items:
        text = build_prompt(it, template)
        a = pt.ours(model, processor, text, it.image, cont)
        b = pt.theirs(hf_model, hf_proc, family, text, it.image, cont)
        row = pt.compare(name, it.id, a, b, args.tol, family=family)
        # TRL's own path: the "image" column put into the conversational prompt, then the
        # processor's chat template with tokenize=True (GRPOTrainer._tokenize_prompts)
        msgs = prepare_multimodal_messages([{"role": "user", "content": text}], images=[it.image])
        trl_ids = hf_proc.apply_chat_template(
            conversation=[msgs], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"][0]
        trl_ids = [int(x) for x in trl_ids]
        problems = list(row.notes)
        if trl_ids != [int(x) for x in a.ids]:
            problems.append(f"TRL's tokenization gives {len(trl_ids)} ids, ours {len(a.ids)}")
        if not row.ok or problems:
            raise SystemExit(
                f"parity check failed for {name}, item {it.id}: tokens equal {row.tokens_equal}, "
                f"max |logit diff| {row.logit_diff:.2e} (tolerance {args.tol:g}), max |log-prob "
                f"diff| {row.logp_diff:.2e}, pixels {row.pixel_diff:.2e}; {'; '.join(problems)}. "
                "The two sides would not train the same model: the timing comparison is void."
            )
        worst = max(worst, row.logit_diff)
        info.prompt_tokens.append(len(a.ids))
    print(
        f"parity {name}: {len(items)} prompts, token ids identical (ours, transformers, TRL's "
        f"path), max |logit diff| {worst:.1e} <= {args.tol:g}",
        flush=True,
    )
    del model, hf_model
    gc.collect()
    return info


def child_env(side: str, threads: int) -> dict[str, str]:
    """The environment of a side's process: its BLAS and its thread count."""
    from hallucue_mlx.blas import NO_FAST_BLAS_ENV

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), env.get("PYTHONPATH", "")) if p
    )
    if side == "ours":
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    else:
        # PyTorch's own BLAS: libtorch_cpu exports the BLAS symbols, so a preloaded OpenBLAS
        # would take its calls
        kept = [
            p
            for p in env.get("LD_PRELOAD", "").split(":")
            if p and "libopenblas" not in p and "libhallucue_blas" not in p
        ]
        env["LD_PRELOAD"] = ":".join(kept)
        env[NO_FAST_BLAS_ENV] = "1"
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_side(
    side: str, setting: Setting, info: ModelInfo, args, work: Path, repeat: int = 0
) -> dict:
    """One side of one setting in a fresh process; its result (or SystemExit with its log)."""
    from hallucue_mlx.config import DEFAULT_TARGETS

    folder = work / "runs" / setting.key.replace("/", "_") / side
    if repeat:
        folder = folder.with_name(f"{side}_{repeat + 1}")
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "setting": dataclasses.asdict(setting),
        "mlx_dir": str(info.mlx_dir),
        "hf_dir": str(info.hf_dir),
        "family": info.family,
        "template": info.template,
        "banned_ids": info.banned_ids,
        # both sides' EOS ids: what a forced-length setting bans on each side
        "eos_ids": sorted(set(info.eos_ids) | set(info.trl_eos_ids)),
        "lora_targets": list(DEFAULT_TARGETS),
        "rank": args.rank,
        "alpha": args.alpha,
        "steps": args.steps,
        "warmup": args.warmup,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "seed": args.seed,
        "attn": args.attn,
        "grad_checkpoint": args.grad_checkpoint,
        "work": str(folder),
        "result": str(folder / "result.json"),
    }
    (folder / "spec.json").write_text(json.dumps(spec, indent=1))
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        side,
        str(folder / "spec.json"),
    ]
    log = folder / "log.txt"
    t0 = time.perf_counter()
    with log.open("w") as f:
        out = None if args.verbose else f
        done = subprocess.run(cmd, env=child_env(side, args.threads), stdout=out, stderr=out)
    if done.returncode != 0 or not (folder / "result.json").is_file():
        tail = "" if args.verbose else "\n".join(log.read_text().splitlines()[-30:])
        raise SystemExit(f"{setting.key}: the {side} side failed (exit {done.returncode}):\n{tail}")
    result = json.loads((folder / "result.json").read_text())
    result["wall_s"] = time.perf_counter() - t0
    return result


def summarize_side(result: dict, setting: Setting, info: ModelInfo, args) -> dict[str, float]:
    steps = result["steps"][args.warmup :]
    if len(steps) != args.steps:
        raise SystemExit(
            f"{setting.key}: expected {args.steps} timed steps, the run logged {len(steps)}"
        )
    P = setting.prompts
    prompt_tokens = [
        sum(info.prompt_tokens[s * P : (s + 1) * P])
        for s in range(args.warmup, args.warmup + args.steps)
    ]
    out = summarize(steps, prompt_tokens, info.n_params, setting.beta, result["gflops"])
    out["peak_rss_mb"] = result["peak_rss_mb"]
    out["gflops"] = result["gflops"]
    return out


def median_summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each column's median over repeated runs of one side (the runs' own, not one run's row)."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


COLUMNS = (
    ("setting", 28, "s"),
    ("side", 6, "s"),
    ("s/step", 9, ".3f"),
    ("rollout s", 10, ".3f"),
    ("train s", 9, ".3f"),
    ("tok/step", 9, ".0f"),
    ("ms/tok", 8, ".2f"),
    ("roll ms/tok", 12, ".2f"),
    ("peak RSS MB", 12, ".0f"),
    ("% GEMM", 8, ".1f"),
)


def table_row(values: list[Any]) -> str:
    cells = []
    for (_, width, fmt), v in zip(COLUMNS, values):
        text = "" if v is None else (v if isinstance(v, str) else format(v, fmt))
        cells.append(text.ljust(width) if fmt == "s" else text.rjust(width))
    return " ".join(cells).rstrip()


def side_row(key: str, side: str, r: dict[str, float]) -> str:
    return table_row(
        [
            key,
            side,
            r["step_s"],
            r["rollout_s"],
            r["train_s"],
            r["tokens"],
            r["ms_per_token"],
            r["rollout_ms_per_token"],
            r["peak_rss_mb"],
            r["pct_ceiling"],
        ]
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("mlx", "mlx-vlm", "torch", "transformers", "trl", "peft", "accelerate"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{pkg} {version(pkg)}")
    return ", ".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="Timed steps per side and setting.")
    ap.add_argument("--warmup", type=int, default=1, help="Untimed steps first.")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Runs per side and setting, alternating sides; each column is the median.",
    )
    ap.add_argument(
        "--models", default=",".join(MODELS), help=f"Comma-separated, of {', '.join(MODELS)}."
    )
    ap.add_argument(
        "--only",
        default=None,
        help="Comma-separated glob patterns over the setting names, e.g. 'tiny/*/max/*'.",
    )
    ap.add_argument(
        "--quick", action="store_true", help=f"Smoke run: {QUICK} only, 1 step, no warm-up."
    )
    ap.add_argument("--max-tokens", type=int, default=64, help="Max completion length.")
    ap.add_argument("--group", type=int, default=GROUP, help="Completions per prompt (G).")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank.")
    ap.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (ours: 16).")
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads on each side.")
    ap.add_argument("--attn", default="sdpa", help="transformers' attention implementation.")
    ap.add_argument(
        "--grad-checkpoint", action="store_true", help="Gradient checkpointing on both sides."
    )
    ap.add_argument("--tol", type=float, default=1e-4, help="Parity: max |logit diff|.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="Work in this folder and keep it (logs, runs).")
    ap.add_argument("--verbose", action="store_true", help="Show each side's own output.")
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.only, args.steps, args.warmup = "tiny", QUICK, 1, 0
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        ap.error("--steps and --repeats must be >= 1 and --warmup >= 0")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        ap.error(f"--models: {', '.join(unknown) or 'none given'}; choose from {', '.join(MODELS)}")
    args.model_list = models
    args.only_list = [p.strip() for p in args.only.split(",")] if args.only else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(*args.child)
    missing = [
        m for m in ("torch", "transformers", "trl", "peft") if not importlib.util.find_spec(m)
    ]
    if missing:
        print(f"needs {', '.join(missing)}: pip install -e '.[bench-trl]'", file=sys.stderr)
        return 2
    try:
        settings = select_settings(
            settings_matrix(args.model_list, group=args.group), args.only_list
        )
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2

    from hallucue_mlx.backend import fast_blas_loaded
    from hallucue_mlx.data.synth import load_synth

    notes: list[str] = []
    if importlib.util.find_spec("torchvision") is not None:
        notes.append("torchvision is installed: uninstall it (see the docstring)")
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(args.keep)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_trl_")))
        max_items = {
            m: max(s.prompts for s in settings if s.model == m) * (args.warmup + args.steps)
            for m in dict.fromkeys(s.model for s in settings)
        }
        infos = {
            m: parity(m, work, load_synth("train", n=n, seed=args.seed), args)
            for m, n in max_items.items()
        }
        for info in infos.values():
            if sorted(info.eos_ids) != info.trl_eos_ids:
                notes.append(
                    f"{info.name}: EOS ids differ, ours {sorted(info.eos_ids)}, TRL's "
                    f"{info.trl_eos_ids} (natural lengths may differ for that reason too)"
                )
        print(
            f"ours: MLX, {BRIDGED if fast_blas_loaded() else 'its bundled reference BLAS (slow)'}"
            f"; TRL: PyTorch CPU, {torch_blas()} without the preload; {args.threads} BLAS threads "
            f"each; gradient checkpointing {'ON' if args.grad_checkpoint else 'off'} on both sides "
            f"(TRL gradient_checkpointing={args.grad_checkpoint}); TRL attention {args.attn}",
            flush=True,
        )
        print(
            f"G={args.group}, max {args.max_tokens} completion tokens, LoRA r{args.rank} alpha "
            f"{args.alpha:g}, T=1, {args.warmup} warm-up + {args.steps} timed steps per side"
            f"{f', median of {args.repeats} alternating runs' if args.repeats > 1 else ''}; "
            f"{versions()}",
            flush=True,
        )
        header = table_row([c[0] for c in COLUMNS])
        lines = [header, "-" * len(header)]
        results: dict[str, dict[str, float]] = {}
        gflops: dict[str, list[float]] = {"ours": [], "trl": []}
        for setting in settings:
            info = infos[setting.model]
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
            for repeat in range(args.repeats):  # alternating sides: drift hits both
                raw = {side: run_side(side, setting, info, args, work, repeat) for side in SIDES}
                for side in SIDES:
                    runs[side].append(summarize_side(raw[side], setting, info, args))
            if raw["ours"]["lora_layers"] != raw["trl"]["lora_layers"]:
                raise SystemExit(
                    f"{setting.key}: LoRA on {raw['ours']['lora_layers']} layers (ours) vs "
                    f"{raw['trl']['lora_layers']} (TRL); the targets do not match"
                )
            if raw["trl"]["gradient_checkpointing"] != args.grad_checkpoint:
                raise SystemExit(f"{setting.key}: TRL's gradient checkpointing was not as set")
            if raw["trl"]["missing_config_fields"]:
                notes.append(
                    "this TRL's GRPOConfig lacks "
                    + ", ".join(raw["trl"]["missing_config_fields"])
                    + " (left at its behaviour)"
                )
            if raw["ours"]["torch_imported"]:
                notes.append(
                    "our side's process imported torch (transformers does when torch is "
                    "installed); its peak RSS includes torch's libraries"
                )
            summary = {side: median_summary(runs[side]) for side in SIDES}
            if any(summary[side]["pct_ceiling"] > 100 for side in SIDES):
                notes.append(
                    "a share of the GEMM ceiling above 100%: that side's ceiling measurement was "
                    "disturbed (other work on the machine?); rerun on an idle machine"
                )
            for side in SIDES:
                gflops[side].append(summary[side]["gflops"])
            lines.append(side_row(setting.key, "ours", summary["ours"]))
            lines.append(side_row("", "TRL", summary["trl"]))
            results[setting.key] = ratios(summary["ours"], summary["trl"])
            r = results[setting.key]
            lines.append(
                table_row(
                    [
                        "",
                        "ratio",
                        r["step_time_ratio"],
                        None,
                        None,
                        None,
                        r["ms_per_token_ratio"],
                        r["rollout_ms_per_token_ratio"],
                    ]
                )
            )
            print(lines[-3], lines[-2], lines[-1], sep="\n", file=sys.stderr, flush=True)
        print("\n".join(lines))
        print(
            "fp32 GEMM ceiling, 1024^3, median over the runs: "
            f"MLX {statistics.median(gflops['ours']):.1f} GFLOPS "
            f"({raw['ours']['blas']}), PyTorch {statistics.median(gflops['trl']):.1f} GFLOPS "
            f"({raw['trl']['blas']}); LM matmul parameters: "
            + ", ".join(f"{i.name} {i.n_params / 1e6:.2f}M" for i in infos.values())
        )
        for note in dict.fromkeys(notes):
            print(f"note: {note}")
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
