"""The paper preset's EasyR1 settings: mini-batched updates per rollout batch, LoRA on the
vision tower, sampled evaluation; validated in config.py and run on the tiny model."""

from __future__ import annotations

import os

import mlx.core as mx
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hallucue_mlx.rewards as rewards  # noqa: E402
from hallucue_mlx.config import ConfigError, TrainConfig, build, load_config  # noqa: E402
from hallucue_mlx.grpo import make_batch, mini_batches  # noqa: E402


def _fake_score(response, item, cfg=None):
    acc = float(sum(response.encode()) % 3 == 0)
    fmt = float(len(response) % 2 == 0)
    return rewards.Reward(
        0.9 * acc + 0.1 * fmt, acc, fmt, rewards.Grade(None, bool(acc), bool(fmt))
    )


def test_mini_batches_split_whole_groups_in_order():
    prompts = [f"p{i}" for i in range(4)]  # stand-ins: only counted and sliced
    comps = [[1] * (1 + (i % 5)) for i in range(8)]  # 4 groups of 2
    batch = make_batch(prompts, comps, [[0.0] * len(c) for c in comps], np.arange(8.0))
    parts = mini_batches(batch, 2)
    assert [p.prompts for p in parts] == [["p0", "p1"], ["p2", "p3"]]
    assert np.array(parts[1].advantages).tolist() == [4.0, 5.0, 6.0, 7.0]
    assert parts[0].totals is None  # each a batch of its own: its own token mean
    assert parts[0].completion_ids.shape[1] == max(len(c) for c in comps[:4])
    assert mini_batches(batch, 1) == [batch] and mini_batches(None, 4) == [None]
    assert len(mini_batches(batch, 8)) == 4  # never an empty mini-batch


def test_config_checks_the_easyr1_settings():
    cfg = load_config(
        "paper-qwen25vl-3b",
        [
            "train.prompts_per_step=8",
            "train.mini_batches=4",
            "train.lora_vision=true",
            "eval.temperature=0.6",
            "eval.top_p=0.95",
            "eval.samples_per_item=4",
        ],
    )
    assert cfg.train.mini_batches == 4 and cfg.train.lora_vision
    assert (cfg.eval.temperature, cfg.eval.top_p, cfg.eval.samples_per_item) == (0.6, 0.95, 4)
    with pytest.raises(ConfigError, match="mini_batches"):
        load_config("paper-qwen25vl-3b", ["train.prompts_per_step=6", "train.mini_batches=4"])
    with pytest.raises(ConfigError, match="mini_batches"):
        load_config("paper-qwen25vl-3b", ["train.prompts_per_step=2", "train.mini_batches=4"])
    with pytest.raises(ConfigError, match="grid.parallel"):
        load_config("paper-qwen25vl-3b", ["train.mini_batches=2", "grid.parallel=data"])
    with pytest.raises(ConfigError, match="samples_per_item"):
        load_config("paper-qwen25vl-3b", ["eval.samples_per_item=4"])  # greedy: all the same


def test_the_preset_lists_its_differences_from_easyr1():
    from pathlib import Path

    import hallucue_mlx

    text = (Path(hallucue_mlx.__file__).parent / "configs/paper-qwen25vl-3b.yaml").read_text()
    header = text.split("\nseed:")[0]
    for words in (
        "global_batch_size 128 counts prompts",
        "freeze_vision_tower",
        "train.lora_vision",
        "train.mini_batches",
        "val_override_config",
        "eval.top_p",
        "clip_ratio_dual",
        "max_response_length",
        "vLLM",
    ):
        assert words in header, words


@pytest.mark.slow
def test_mini_batches_and_vision_lora_train_the_tiny_model(tiny_dir, tmp_path):
    from hallucue_mlx.train import train

    cfg = build(
        TrainConfig,
        dict(
            steps=2,
            n_train=4,
            prompts_per_step=2,
            num_generations=2,
            max_completion_length=6,
            eval_every=0,
            save_every=2,
            mini_batches=2,
            lora_vision=True,
            lora_targets=["q_proj", "v_proj", "qkv", "proj", "gate_proj", "up_proj", "down_proj"],
            beta=0.01,
            learning_rate=1e-2,
            warmup_steps=0,
            prompt_template="short",
        ),
        "train",
    )
    res = train(cfg, tiny_dir, tmp_path / "t", quiet=True, reward_fn=_fake_score)
    assert res.steps_done == 2 and res.adapter_dir is not None
    w = {k: np.array(v) for k, v in mx.load(str(res.adapter_dir / "adapters.safetensors")).items()}
    vision_b = [k for k in w if k.startswith("vision_tower.") and k.endswith("lora_b")]
    assert vision_b, sorted(w)[:5]
    # the loss reached the vision tower: its LoRA B moved from 0
    assert max(np.abs(w[k]).max() for k in vision_b) > 0
    lines = (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()
    assert len([x for x in lines if '"event"' not in x]) == 2
    # evaluation loads the adapter, vision layers included
    from hallucue_mlx.models.load import load_model

    model, _ = load_model(tiny_dir, res.adapter_dir)
    names = {n for n, _ in model.named_modules()}
    assert any(n.startswith("vision_tower.") and n.endswith(".linear") for n in names)
