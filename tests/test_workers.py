"""The loss phase group by group on several CPU threads (grpo.split_groups, workers.StreamPool):
the groups' shares add up to the batch, and a training computes the same numbers bit for bit
whatever HALLUCUE_CPU_THREADS says."""

from __future__ import annotations

import json
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx import backend, rewards  # noqa: E402
from hallucue_mlx.config import TrainConfig, build  # noqa: E402
from hallucue_mlx.data.synth import load_synth  # noqa: E402
from hallucue_mlx.grpo import (  # noqa: E402
    LossConfig,
    make_batch,
    policy_loss,
    reference_logprobs,
    split_groups,
)
from hallucue_mlx.models.lora import LoraConfig, LoRALinear, apply_lora  # noqa: E402
from hallucue_mlx.rollout import encode_prompt, generate, logit_bias  # noqa: E402
from hallucue_mlx.train import train  # noqa: E402
from hallucue_mlx.workers import StreamPool  # noqa: E402


def _setup(tiny_dir, prompts=3, n=3):
    import mlx_vlm

    model, proc = mlx_vlm.load(str(tiny_dir))
    apply_lora(model, LoraConfig(rank=4))
    for i, m in enumerate(x for _, x in model.named_modules() if isinstance(x, LoRALinear)):
        m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape, key=mx.random.key(100 + i))
    mx.eval(model.parameters())
    bias = logit_bias(model, proc)
    items = load_synth("train", n=prompts, seed=0)
    enc = [encode_prompt(proc, model, it, template="short") for it in items]
    groups = generate(model, proc, enc, n=n, temperature=1.0, max_tokens=8, key=mx.random.key(0))
    comps = [c for g in groups for c in g]
    adv = np.linspace(-1, 1, len(comps)).astype(np.float32)
    batch = make_batch(enc, [c.ids for c in comps], [c.logprobs for c in comps], adv)
    batch.old_logps = batch.old_logps - 0.05  # ratio != 1: clipping and the loss value move
    batch.ref_logps = reference_logprobs(model, batch, bias, 1.0)
    return model, bias, batch


def _total(outs):
    total = outs[0]
    for out in outs[1:]:
        total = tree_map(lambda a, b: a + b, total, out)
    mx.eval(total)
    return total


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.array(a).ravel() for _, a in tree_flatten(tree)])


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_the_groups_shares_add_up_to_the_batch(tiny_dir, loss_type):
    model, bias, batch = _setup(tiny_dir)
    cfg = LossConfig(loss_type=loss_type, beta=0.01, temperature=1.0, max_completion_length=8)
    vg = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias))
    whole = vg(batch)
    mx.eval(whole)
    shares = split_groups(batch)
    assert [s.completion_ids.shape for s in shares] == [(3, n) for n in batch.group_lengths]
    assert max(batch.group_lengths) == batch.completion_ids.shape[1]
    parts = _total([vg(s) for s in shares])
    (loss, metrics), grads = whole
    (s_loss, s_metrics), s_grads = parts
    assert sorted(metrics) == sorted(s_metrics) and "kl" in metrics
    np.testing.assert_allclose(float(s_loss), float(loss), rtol=1e-5, atol=1e-6)  # cancels
    for k in metrics:
        np.testing.assert_allclose(float(s_metrics[k]), float(metrics[k]), rtol=1e-5, atol=1e-7)
    g, sg = _flat(grads), _flat(s_grads)
    assert np.abs(g).max() > 1e-6
    np.testing.assert_allclose(sg, g, rtol=1e-4, atol=1e-6 * np.abs(g).max())


def test_the_pool_gives_the_same_numbers_for_any_thread_count(tiny_dir):
    model, bias, batch = _setup(tiny_dir)
    cfg = LossConfig(beta=0.01, temperature=1.0)
    vg = nn.value_and_grad(model, lambda b: policy_loss(model, b, cfg, bias))
    params = model.trainable_parameters()

    def share_build(share):
        def b():
            out = vg(share)
            model.update(params)  # as train does: the next graph starts from the weights
            return [out]

        return b

    blas_before = backend.blas_threads()
    results = {}
    for threads in (1, 2, 3):
        with StreamPool(threads) as pool:
            outs = pool.run([share_build(s) for s in split_groups(batch)])
        results[threads] = _flat(_total([stages[0] for stages in outs]))
        assert backend.blas_threads() == blas_before  # the pool hands OpenBLAS's count back
    np.testing.assert_array_equal(results[2], results[1])
    np.testing.assert_array_equal(results[3], results[1])


def test_the_pool_returns_stages_in_order_and_hands_back_errors():
    def bad():
        raise ValueError("share 2 cannot be built")

    def staged(i):
        first = mx.arange(3) * i
        return [first, first + 1]  # the second stage reads the first's evaluated result

    with StreamPool(2) as pool:
        out = pool.run([lambda i=i: staged(i) for i in range(5)])
        assert [[x.tolist() for x in st] for st in out] == [
            [[0, i, 2 * i], [1, i + 1, 2 * i + 1]] for i in range(5)
        ]
        with pytest.raises(ValueError, match="share 2"):
            pool.run([lambda: [mx.ones(2)], bad, lambda: [mx.zeros(2)]])
        assert pool.run([lambda: [mx.ones(2) + 1], lambda: [mx.ones(2)]])[0][0].tolist() == [2, 2]


def _score(response, item, cfg=None):
    acc = float(sum(response.encode()) % 3 == 0)
    return rewards.Reward(acc, acc, 1.0, rewards.Grade(None, bool(acc), True))


@pytest.mark.parametrize("grad_checkpoint", [False, True], ids=["plain", "checkpointed"])
def test_a_training_is_the_same_bit_for_bit_for_any_cpu_thread_count(
    tiny_dir, tmp_path, monkeypatch, grad_checkpoint
):
    cfg = build(
        TrainConfig,
        dict(
            steps=2,
            n_train=6,
            prompts_per_step=3,
            num_generations=3,
            max_completion_length=8,
            eval_every=0,
            num_iterations=2,
            beta=0.01,
            learning_rate=1e-2,
            prompt_template="short",
            grad_checkpoint=grad_checkpoint,
        ),
        "train",
    )
    drop = {"rollout_time", "update_time", "step_time", "rollout_tokens_per_s", "peak_memory_gb"}
    seen = {}
    for threads in ("1", "3"):
        monkeypatch.setenv(backend.CPU_THREADS_ENV, threads)
        out = tmp_path / threads
        train(cfg, tiny_dir, out, quiet=True, reward_fn=_score)
        adapter = mx.load(str(out / "adapter" / "adapters.safetensors"))
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        steps = [{k: v for k, v in d.items() if k not in drop} for d in lines if "event" not in d]
        seen[threads] = ({k: np.array(v) for k, v in adapter.items()}, steps)
    (a1, s1), (a3, s3) = seen["1"], seen["3"]
    assert s1 == s3 and len(s1) == 2 and s1[-1]["kl"] > 0
    assert a1.keys() == a3.keys()
    for k in a1:
        np.testing.assert_array_equal(a3[k], a1[k], err_msg=k)
    assert max(np.abs(v).max() for k, v in a1.items() if k.endswith("lora_b")) > 0


def test_cpu_threads_comes_from_the_environment_or_the_cores(monkeypatch):
    monkeypatch.setenv(backend.CPU_THREADS_ENV, "3")
    assert backend.cpu_threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv(backend.CPU_THREADS_ENV, bad)
        with pytest.raises(ValueError, match=backend.CPU_THREADS_ENV):
            backend.cpu_threads()
    monkeypatch.delenv(backend.CPU_THREADS_ENV)
    assert backend.cpu_threads() == backend.usable_cores() // backend.local_ranks()


def test_a_bad_thread_count_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setenv(backend.CPU_THREADS_ENV, "all")
    cfg = build(TrainConfig, dict(steps=1, eval_every=0), "train")
    with pytest.raises(ValueError, match=f"{backend.CPU_THREADS_ENV}='all'.*whole number"):
        train(cfg, tmp_path / "no-such-model", tmp_path / "out", quiet=True)


def test_plan_counts_the_threads_and_names_a_bad_count(monkeypatch):
    from hallucue_mlx.config import load_config
    from hallucue_mlx.plan import PlanError, workload

    cfg = load_config(None, [])
    monkeypatch.setenv(backend.CPU_THREADS_ENV, "3")
    assert workload(cfg, gpu=False, image=None, text_tokens=None).loss_threads == 3
    assert workload(cfg, gpu=True, image=None, text_tokens=None).loss_threads == 1
    monkeypatch.setenv(backend.CPU_THREADS_ENV, "-2")
    with pytest.raises(PlanError, match=backend.CPU_THREADS_ENV):
        workload(cfg, gpu=False, image=None, text_tokens=None)
