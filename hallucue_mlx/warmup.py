"""Build hallucue-tiny: a from-scratch Qwen2.5-VL warmed up on synth so RL starts from partial skill.

Recipe (field notes, two measured trials): Qwen2.5-VL with text 256 x 4 layers and vision 128 x 2
blocks, 112 px images, full fine-tuning with cross-entropy on the completion tokens, AdamW lr 3e-4,
batch 8, 50 warm-up steps then cosine to 5%, weight decay 0.01, gradient clip 1.0, fresh items every
step, text_dominant : vision items weighted toward vision. The vision path learns late, then fast,
so the build probes the model periodically and keeps the checkpoint that meets every target.

Decision on plain images: a share of the warm-up items whose answer is fully stated in the text
(text_dominant / text_lite) are shown with a blank image and keep their normal target. A real VLM
has seen plain and uninformative images; without this, a blank image is out of distribution and the
blank condition measures broken output rather than reliance on the image (field notes: bars under
blank images fell to 2.5% with 21% format). Vision-dependent items are never shown with a blank or
mismatched image, so the warm-up never teaches the model to guess an answer the input does not hold.

Declining (WarmupConfig.decline_share, on in the shipped build): the warm-up also teaches the
answer for "the input does not hold it", \\boxed{unknown}, where the needed fact is truly absent:
a share of the vision-dependent items is shown with a blank image (their fact is in no pixel and
no sentence), and a share of the items whose number to add is stated in the text only
(SynthConfig.text_only_facts) loses that sentence to text removal; both get the decline target.
Text-stated items under a blank image keep their answer (the text holds it), so the model learns
to decline where nothing holds the fact, not whenever the image is plain. It needs a template
that offers declining (prompts: "short-decline", "easyr1-decline"); Targets'
min_declined_when_absent / max_declined_when_present then check that the model declines where
nothing holds the fact (vision_only under a blank image) and answers where it can (clean).

Skipping the working (WarmupConfig.skip_share, a later stage over a built model): a share of
the items that ask for additions get a target whose think states the visual fact and stops
("The digit is 7." then \\boxed{14}), so the model sometimes writes its additions out and
sometimes answers without them, as language models do. Writing them out is more often right, so
a reward on the answer alone can teach the model to do it every time: headroom in execution,
not in perception, the kind the paper finds survives a blank image.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import yaml
from mlx.utils import tree_flatten

from hallucue_mlx import atomic
from hallucue_mlx.config import ConfigError, coerce_value
from hallucue_mlx.corrupt import blank_image, remove_text
from hallucue_mlx.data.item import Item
from hallucue_mlx.data.synth import SynthConfig, load_synth, make_item
from hallucue_mlx.evaluate import Decoding, greedy_eval
from hallucue_mlx.models.tiny import build_tiny_random
from hallucue_mlx.prompts import DECLINE_ANSWER, build_prompt, format_answer, offers_decline

# The mix the warm-up draws from. Vision-dependent items 3.5 : 1.5 over text-stated ones, most of
# them vision_only (field notes' second trial: text_dominant : vision_only = 1 : 3 learned the
# vision path; an even spread over versions did not within an hour). Text skills stay at ~100%
# with this share. The tasks the tower learns last (digit, bars) are drawn more often than colour,
# which it reads within the first thousand steps.
# Chains of additions (the shipped splits' headroom) are shown rarely: the atomic skills (read a
# fact, add once, add to a two-digit number: the warm-up-only "sum" task) are taught to mastery,
# their composition only glimpsed, so the base model solves a chain sometimes and GRPO has
# something to sharpen (Targets.chain_accuracy picks a checkpoint at that edge).
WARMUP_SYNTH = SynthConfig(
    tasks=("count", "digit", "bars", "color", "sum"),
    task_weights=(1.0, 1.25, 1.25, 0.75, 0.5),
    version_weights=(1.0, 0.5, 1.0, 2.5),
    chain_weights=(1.0, 0.3, 0.15),
)
PROBE_BATCH = 32  # prompts per batch of a probe
PROBE_MAX_TOKENS = 64  # a three-addition answer is 46-48 tokens with its end token


@dataclass(frozen=True)
class WarmupConfig:
    seed: int = 0
    max_minutes: float = 56.0
    max_steps: int = 12000
    batch_size: int = 8
    learning_rate: float = 3e-4
    warmup_steps: int = 50
    decay_steps: int = 9600  # cosine horizon; the best probed checkpoint is kept, not the last
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    blank_share: float = 0.1  # of text-stated items shown with a blank image (see module doc)
    # of the items whose needed fact can be made truly absent, the share that is, with the
    # decline target (module doc); 0: never teach declining
    decline_share: float = 0.2
    probe_every: int = 600
    probe_items: int = 200
    final_eval_items: int = 600  # synth test items behind eval.json
    # the EasyR1 suffix doubles sequence length for a 5 M model; same answer format, and the
    # sentence that offers \boxed{unknown}
    template: str = "short-decline"
    text_hidden: int = 256
    text_layers: int = 4
    vision_hidden: int = 128
    vision_depth: int = 2
    # a model folder to continue from (a second stage over an earlier build: same tokenizer and
    # shapes); empty: a random initialisation of the shapes above
    init: str = ""
    # of the count/digit items that ask for additions, the share whose target skips the working:
    # the think states the visual fact and the answer follows without the additions (module doc)
    skip_share: float = 0.0
    # "targets": keep the earliest probed checkpoint that meets the targets (stops there);
    # "last": a fixed-length stage, trained for max_steps (or max_minutes), the last one kept
    keep: str = "targets"


@dataclass(frozen=True)
class Targets:
    """What the shipped model must meet (greedy, synth test): room for RL, and real image use."""

    min_accuracy: float = 0.35
    max_accuracy: float = 0.75
    min_format: float = 0.95
    min_text_dominant: float = 0.80
    min_vision_gain: float = 0.15  # vision_only: clean minus blank accuracy
    # with a decline-teaching warm-up (WarmupConfig.decline_share > 0): the share of vision_only
    # items declined under a blank image, at least; the share of clean items declined, at most
    min_declined_when_absent: float = 0.0
    max_declined_when_present: float = 1.0
    # greedy accuracy on the items with one addition, and on the chained ones (two or more):
    # solved sometimes, not always (the headroom GRPO needs)
    min_addition_accuracy: float = 0.0
    max_addition_accuracy: float = 1.0
    min_chain_accuracy: float = 0.0
    max_chain_accuracy: float = 1.0

    def check(self, ev: dict) -> list[str]:
        """The targets an eval.json-shaped result misses (empty when all are met)."""
        clean = ev["clean"]
        misses = []
        if not self.min_accuracy <= clean["accuracy"] <= self.max_accuracy:
            misses.append(
                f"clean accuracy {clean['accuracy']:.3f} outside [{self.min_accuracy}, {self.max_accuracy}]"
            )
        if clean["format_rate"] < self.min_format:
            misses.append(f"format rate {clean['format_rate']:.3f} < {self.min_format}")
        td = clean["by_version"].get("text_dominant", {}).get("accuracy", 0.0)
        if td < self.min_text_dominant:
            misses.append(f"text_dominant accuracy {td:.3f} < {self.min_text_dominant}")
        gain = vision_gain(ev)
        if gain < self.min_vision_gain:
            misses.append(f"vision_only gain {gain:.3f} < {self.min_vision_gain}")
        absent = ev["blank"]["by_version"].get("vision_only", {}).get("declined_rate", 0.0)
        if absent < self.min_declined_when_absent:
            misses.append(
                f"vision_only declined under blank images {absent:.3f} < "
                f"{self.min_declined_when_absent}"
            )
        present = clean.get("declined_rate", 0.0)
        if present > self.max_declined_when_present:
            misses.append(f"clean declined rate {present:.3f} > {self.max_declined_when_present}")
        windows = (
            (
                "one-addition",
                "addition_accuracy",
                self.min_addition_accuracy,
                self.max_addition_accuracy,
            ),
            ("chain", "chain_accuracy", self.min_chain_accuracy, self.max_chain_accuracy),
        )
        for name, key, lo, hi in windows:
            value = clean.get(key)
            if value is not None and not lo <= value <= hi:
                misses.append(f"{name} accuracy {value:.3f} outside [{lo}, {hi}]")
        return misses


# What the shipped build must meet: the defaults above plus declining where the fact is absent
# and the edge-of-competence window on chains.
SHIPPED_TARGETS = Targets(
    min_declined_when_absent=0.5,
    max_declined_when_present=0.05,
    # execution solved sometimes, not always: the third stage skips the working on most addition
    # items, so greedy answers get one addition right a third of the time and a chain rarely,
    # while samples at temperature 1 that write the working get them right (pass@8 well above
    # pass@1 on validation; docs/design.md, "Headroom in execution"). Chains: rarely, not never
    # (2%; the floor was 5% for the stage that skipped 60%, whose chains were 6.9% on test; the
    # 85% stage's are 4.5% there and 3.8% on validation)
    min_addition_accuracy=0.15,
    max_addition_accuracy=0.6,
    min_chain_accuracy=0.02,
    max_chain_accuracy=0.6,
)


def vision_gain(ev: dict) -> float:
    c = ev["clean"]["by_version"].get("vision_only", {}).get("accuracy", 0.0)
    b = ev["blank"]["by_version"].get("vision_only", {}).get("accuracy", 0.0)
    return c - b


# The reasoning of a decline target: what is missing, said plainly.
DECLINE_THINK_IMAGE = "The image is blank, and the text does not say it either."
DECLINE_THINK_TEXT = "The text does not say the number to add, and the image cannot show it."


def synth_config(cfg: WarmupConfig) -> SynthConfig:
    """The item mix: WARMUP_SYNTH, with text-only facts when the warm-up teaches declining."""
    if cfg.decline_share > 0:
        return dataclasses.replace(WARMUP_SYNTH, text_only_facts=True)
    return WARMUP_SYNTH


def warmup_overrides(cfg: WarmupConfig, settings: list[str]) -> WarmupConfig:
    """`cfg` with KEY=VALUE settings applied, each read as YAML and coerced to its field's type
    by the run configs' rule (config.coerce_value); ValueError naming the setting and the fix
    for an unknown key or a value of the wrong type."""
    types = typing.get_type_hints(WarmupConfig)
    changes: dict = {}
    for setting in settings:
        key, sep, raw = setting.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ValueError(
                f"warm-up setting {setting!r}: give KEY=VALUE with KEY one of {', '.join(types)}"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
            changes[key] = coerce_value(types[key], value, key)
        except (ConfigError, yaml.YAMLError) as e:
            raise ValueError(f"warm-up setting {setting!r}: {e}") from None
    return dataclasses.replace(cfg, **changes)


def check_config(cfg: WarmupConfig) -> None:
    """Raise ValueError for a warm-up that cannot work: shares outside [0, 1], or declining
    taught with a template that does not offer it."""
    for name in ("blank_share", "decline_share", "skip_share"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"warm-up {name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.keep not in ("targets", "last"):
        raise ValueError(f"warm-up keep must be 'targets' or 'last', got {cfg.keep!r}")
    if cfg.init and not (Path(cfg.init) / "config.json").is_file():
        raise ValueError(
            f"warm-up init {cfg.init!r} is not a model folder (no config.json); give the folder "
            "of an earlier build, e.g. the shipped hallucue-tiny"
        )
    if cfg.decline_share > 0 and not offers_decline(cfg.template):
        raise ValueError(
            f"warm-up decline_share {cfg.decline_share} teaches \\boxed{{{DECLINE_ANSWER}}}, but "
            f"template {cfg.template!r} does not offer it; use 'short-decline' or 'easyr1-decline'"
        )


def skipped_think(think: str) -> str:
    """The think of a target that skips the working: its first sentence, the visual fact."""
    return think.split(". ")[0].rstrip(".") + "."


def skips_working(item: Item, target: str) -> bool:
    """Whether `item` may get a skipped-working target: a count or digit question that asks for
    additions, not taught to decline."""
    addends = (item.meta.get("facts") or {}).get("addends")
    return item.task in ("count", "digit") and bool(addends) and DECLINE_ANSWER not in target


def warmup_items(step: int, cfg: WarmupConfig) -> list[tuple[Item, str]]:
    """The batch of a step: fresh sft items (a pure function of seed and step) with their targets."""
    rng = random.Random(f"warmup:{cfg.seed}:{step}")
    synth = synth_config(cfg)
    batch = []
    for j in range(cfg.batch_size):
        item = make_item("sft", step * cfg.batch_size + j, cfg.seed, synth)
        target = format_answer(item.meta["think"], item.answer)
        if item.version in ("text_dominant", "text_lite") and rng.random() < cfg.blank_share:
            # the text states the fact: a plain image changes nothing (module doc)
            item = item.with_(image=blank_image(item.image))
        elif cfg.decline_share > 0 and rng.random() < cfg.decline_share:
            if item.meta.get("text_only_facts"):  # the number to add is in one sentence only
                item = remove_text(item)[0]
                target = format_answer(DECLINE_THINK_TEXT, DECLINE_ANSWER)
            elif item.meta.get("needs_image"):  # the fact is in the image only
                item = item.with_(image=blank_image(item.image))
                target = format_answer(DECLINE_THINK_IMAGE, DECLINE_ANSWER)
        batch.append((item, target))
    if cfg.skip_share > 0:  # its own stream: the draws above stay those of a stage without it
        skip = random.Random(f"skip:{cfg.seed}:{step}")
        batch = [
            (item, format_answer(skipped_think(item.meta["think"]), item.answer))
            if skips_working(item, target) and skip.random() < cfg.skip_share
            else (item, target)
            for item, target in batch
        ]
    return batch


def chat_prompt(processor, item: Item, template: str) -> str:
    """The chat-formatted prompt text with one image placeholder (before the text, as Qwen2.5-VL)."""
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": build_prompt(item, template)}],
        }
    ]
    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_sft_batch(processor, batch: list[tuple[Item, str]], template: str):
    """Right-padded input ids, completion-token loss mask, pixel values and grids for a batch."""
    tok = processor.tokenizer
    prompts = [chat_prompt(processor, it, template) for it, _ in batch]
    enc = processor(
        text=prompts, images=[it.image for it, _ in batch], padding=False, return_tensors=None
    )
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rows, masks = [], []
    for ids, (_, target) in zip(enc["input_ids"], batch):
        ids = np.asarray(ids).reshape(-1).tolist()
        comp = tok.encode(target, add_special_tokens=False) + [end]
        rows.append(ids + comp)
        masks.append([0] * len(ids) + [1] * len(comp))
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else end
    input_ids = mx.array([r + [pad] * (width - len(r)) for r in rows])
    mask = mx.array([m + [0] * (width - len(m)) for m in masks], dtype=mx.float32)
    pixel_values = mx.array(np.asarray(enc["pixel_values"]), dtype=mx.float32)
    grid = mx.array(np.asarray(enc["image_grid_thw"]))
    return input_ids, mask, pixel_values, grid


def completion_logits(
    model, input_ids: mx.array, pixel_values: mx.array, grid: mx.array
) -> mx.array:
    """Logits of a right-padded batch with explicit M-RoPE positions (no stale cached state)."""
    emb = model.get_input_embeddings(input_ids, pixel_values, image_grid_thw=grid)
    out = model.language_model(input_ids, emb.inputs_embeds, position_ids=emb.position_ids)
    return out.logits


def sft_loss(model, input_ids, mask, pixel_values, grid) -> mx.array:
    logits = completion_logits(model, input_ids, pixel_values, grid)[:, :-1]
    targets, m = input_ids[:, 1:], mask[:, 1:]
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), targets, reduction="none")
    return (ce * m).sum() / mx.maximum(m.sum(), 1.0)


def lr_schedule(cfg: WarmupConfig) -> Callable:
    warm = optim.linear_schedule(1e-7, cfg.learning_rate, cfg.warmup_steps)
    cos = optim.cosine_decay(
        cfg.learning_rate, cfg.decay_steps, cfg.learning_rate * cfg.min_lr_ratio
    )
    return optim.join_schedules([warm, cos], [cfg.warmup_steps])


def clip_grads(grads, max_norm: float):
    clipped, norm = optim.clip_grad_norm(grads, max_norm)
    return clipped, norm


def save_model_dir(model, src_dir: Path, out_dir: Path, dtype=mx.bfloat16) -> None:
    """Copy tokenizer/processor files from the random build and write the trained weights."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in src_dir.iterdir():
        if (
            f.is_file()
            and not f.name.endswith(".safetensors")
            and f.name != "model.safetensors.index.json"
        ):
            shutil.copy2(f, out_dir / f.name)
    weights = {
        k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v
        for k, v in tree_flatten(model.parameters())
    }
    atomic.write_with(
        out_dir / "model.safetensors",
        lambda p: mx.save_safetensors(str(p), weights, metadata={"format": "mlx"}),
    )


def param_count(model) -> int:
    return sum(v.size for _, v in tree_flatten(model.parameters()))


def warmup_corpus(n: int = 4000, seed: int = 0, decline: bool = False) -> list[str]:
    """Texts the tokenizer is trained on: synth prompts and targets (what the model will read and
    write); with `decline`, the decline-offering prompts and the decline targets too."""
    # The chat template's own words, so that they merge into few tokens too.
    texts = ["system\nYou are a helpful assistant.", "user\n", "assistant\n"] * (n // 4)
    synth = dataclasses.replace(WARMUP_SYNTH, text_only_facts=True) if decline else WARMUP_SYNTH
    templates = (
        ("short", "easyr1", "short-decline", "easyr1-decline") if decline else ("short", "easyr1")
    )
    for i in range(n):
        it = make_item("sft", 10_000_000 + i, seed, synth)
        texts += [build_prompt(it, t) for t in templates]
        texts.append(format_answer(it.meta["think"], it.answer))
    if decline:
        texts += [
            format_answer(t, DECLINE_ANSWER) for t in (DECLINE_THINK_IMAGE, DECLINE_THINK_TEXT)
        ] * (n // 20)
    return texts


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan


def config_dict(cfg: WarmupConfig) -> dict:
    return asdict(cfg)


def timer() -> Callable[[], float]:
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


# ---------------------------------------------------------------- probe (greedy, batched)


def _version_summary(records: list[dict]) -> dict:
    """eval.json's entry of one condition: accuracy, format rate, accuracy per version on the
    items with no addition (the single skills: read the stated answer, read the image), and the
    items with one addition and with a chain (two or more) counted apart (execution)."""
    steps = [r.get("trace_chain") or 0 for r in records]
    single = [r for r, k in zip(records, steps) if k == 0]
    one = [r for r, k in zip(records, steps) if k == 1]
    chains = [r for r, k in zip(records, steps) if k > 1]
    by_version = {}
    for v in sorted({r["version"] for r in single}):
        sel = [r for r in single if r["version"] == v]
        by_version[v] = {
            "n": len(sel),
            "accuracy": _mean(r["correct"] for r in sel),
            "declined_rate": _mean(bool(r.get("declined")) for r in sel),
        }
    return {
        "n": len(records),
        "accuracy": _mean(r["correct"] for r in records),
        "format_rate": _mean(r["format_ok"] for r in records),
        "declined_rate": _mean(bool(r.get("declined")) for r in records),
        "addition_accuracy": _mean(r["correct"] for r in one) if one else None,
        "addition_n": len(one),
        "chain_accuracy": _mean(r["correct"] for r in chains) if chains else None,
        "chain_n": len(chains),
        "by_version": by_version,
    }


def probe(model, processor, items: list[Item], template: str) -> dict:
    """eval.json-shaped accuracy of greedy answers with clean and blank images."""
    decoding = Decoding(template=template, max_tokens=PROBE_MAX_TOKENS, batch_size=PROBE_BATCH)
    by_cond = greedy_eval(model, processor, items, ("none", "blank"), decoding)
    # eval.json keeps its own name for the clean condition (the shipped model's file has it)
    return {
        "clean": _version_summary(by_cond["none"]),
        "blank": _version_summary(by_cond["blank"]),
    }


# ---------------------------------------------------------------- the build


def probe_set(cfg: WarmupConfig) -> list[Item]:
    """The items that choose the checkpoint: synth validation (the test split stays untouched)."""
    return load_synth("validation", cfg.probe_items, seed=cfg.seed)


def write_eval(out_dir: str | Path, cfg: WarmupConfig, targets: Targets) -> dict:
    """eval.json: the final numbers on the synth test split (600 items), from the shipped
    weights in out_dir, and the targets they miss."""
    import mlx_vlm

    model, processor = mlx_vlm.load(str(out_dir))
    model.set_dtype(mx.float32)
    ev = probe(model, processor, load_synth("test", cfg.final_eval_items, seed=0), cfg.template)
    ev["misses"] = targets.check(ev)
    atomic.write_json(Path(out_dir) / "eval.json", ev, indent=2, sort_keys=True)
    return ev


def build_tiny(
    out_dir: str | Path, cfg: WarmupConfig | None = None, targets: Targets | None = None, log=print
) -> dict:
    """Build hallucue-tiny into `out_dir`; returns the build log (probes over time, final eval).

    Deterministic given the seed (same items, same init, same update order) up to floating-point
    reduction order of the BLAS in use.
    """
    import tempfile

    cfg = cfg or WarmupConfig()
    check_config(cfg)
    targets = targets or (SHIPPED_TARGETS if cfg.decline_share > 0 else Targets())
    out_dir = Path(out_dir)
    elapsed = timer()
    mx.random.seed(cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        if cfg.init:  # a second stage: the earlier build's weights, tokenizer and processor
            src = Path(tmp) / "init"
            shutil.copytree(cfg.init, src)
        else:
            src = build_tiny_random(
                Path(tmp) / "random",
                "qwen2_5_vl",
                seed=cfg.seed,
                text_hidden=cfg.text_hidden,
                text_layers=cfg.text_layers,
                vision_hidden=cfg.vision_hidden,
                vision_depth=cfg.vision_depth,
                corpus=warmup_corpus(seed=cfg.seed, decline=cfg.decline_share > 0),
            )
        import mlx_vlm

        model, processor = mlx_vlm.load(str(src))
        model.set_dtype(mx.float32)
        log(
            f"hallucue-tiny: {param_count(model) / 1e6:.2f} M parameters, vocabulary {model.config.text_config.vocab_size}"
        )
        # MLX's AdamW without bias correction, as in the measured recipe that this build follows
        # (its first ~100 updates are a few times larger than the scheduled rate; the 50-step
        # warm-up absorbs that). GRPO, by contrast, uses bias correction (train.make_optimizer).
        opt = optim.AdamW(learning_rate=lr_schedule(cfg), weight_decay=cfg.weight_decay)
        loss_and_grad = nn.value_and_grad(model, sft_loss)
        probes, history, kept = probe_set(cfg), [], None
        losses: list[float] = []
        for step in range(cfg.max_steps):
            batch = encode_sft_batch(processor, warmup_items(step, cfg), cfg.template)
            loss, grads = loss_and_grad(model, *batch)
            grads, _ = clip_grads(grads, cfg.grad_clip)
            opt.update(model, grads)
            mx.eval(model.parameters(), opt.state, loss)
            losses.append(loss.item())
            done = step + 1
            out_of_time = elapsed() > cfg.max_minutes * 60
            if done % cfg.probe_every == 0 or out_of_time or done == cfg.max_steps:
                ev = probe(model, processor, probes, cfg.template)
                misses = targets.check(ev)
                row = {
                    "step": done,
                    "minutes": round(elapsed() / 60, 2),
                    "loss": round(_mean(losses[-100:]), 4),
                    "clean": round(ev["clean"]["accuracy"], 4),
                    "blank": round(ev["blank"]["accuracy"], 4),
                    "format": round(ev["clean"]["format_rate"], 4),
                    "text_dominant": round(
                        ev["clean"]["by_version"].get("text_dominant", {}).get("accuracy", 0), 4
                    ),
                    "vision_gain": round(vision_gain(ev), 4),
                    "addition": _round(ev["clean"].get("addition_accuracy")),
                    "chain": _round(ev["clean"].get("chain_accuracy")),
                    "declined_clean": round(ev["clean"]["declined_rate"], 4),
                    "declined_absent": round(
                        ev["blank"]["by_version"].get("vision_only", {}).get("declined_rate", 0), 4
                    ),
                    "meets_targets": not misses,
                }
                history.append(row)
                log(json.dumps(row))
                # keep="last" (a fixed-length stage) saves its last checkpoint after the loop
                if cfg.keep == "targets" and not misses:
                    # Keep the earliest checkpoint that meets every target with margin: most room for RL.
                    strong = (
                        row["vision_gain"] >= targets.min_vision_gain + 0.1
                        and targets.min_accuracy + 0.05
                        <= row["clean"]
                        <= targets.max_accuracy - 0.05
                    )
                    if kept is None or strong:
                        save_model_dir(model, src, out_dir)
                        kept = row
                    if strong:
                        break
                elif kept is not None and (
                    row["clean"] > targets.max_accuracy
                    or (row["chain"] or 0) > targets.max_chain_accuracy
                ):
                    break  # past the window: the kept checkpoint is the one to ship
            if out_of_time:
                break
        if kept is None:
            save_model_dir(model, src, out_dir)
            kept = history[-1] if history else {"step": 0}
            if cfg.keep != "last":
                log("warning: no probed checkpoint met every target; shipping the last one")
    ev = write_eval(out_dir, cfg, targets)
    build = {
        "config": config_dict(cfg),
        "kept_step": kept["step"],
        "minutes": round(elapsed() / 60, 2),
        "history": history,
        "parameters": param_count(model),
    }
    atomic.write_json(out_dir / "build.json", build, indent=2, sort_keys=True)
    return {"eval": ev, "build": build}
