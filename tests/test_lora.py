"""LoRA layers: identity at start, reference switch, mlx-vlm adapter format, QLoRA."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx.models.lora import (  # noqa: E402
    LoraConfig,
    LoRALinear,
    adapter_weights,
    apply_lora,
    attach_adapter,
    count_parameters,
    lora_disabled,
    save_adapter,
)


def _load(path, **kw):
    import mlx_vlm

    return mlx_vlm.load(str(path), **kw)


def _ids():
    return mx.array([[827, 82, 88, 100, 200, 300, 401, 17, 198]])


def _logits(model, ids):
    out = model.language_model(ids)
    return np.array(out.logits.astype(mx.float32))


def _randomize_b(model, seed=1):
    key = mx.random.key(seed)
    for i, layer in enumerate(m for _, m in model.named_modules() if isinstance(m, LoRALinear)):
        layer.lora_b = 0.05 * mx.random.normal(layer.lora_b.shape, key=mx.random.split(key, 64)[i])
    mx.eval(model.parameters())


def test_lora_targets_freeze_and_identity(tiny_dir):
    model, _ = _load(tiny_dir)
    ids = _ids()
    base = _logits(model, ids)
    names = apply_lora(
        model, LoraConfig(rank=4, alpha=8, num_layers=1, target_modules=("q_proj", "v_proj"))
    )
    # last layer only, two projections, vision untouched
    assert names == [
        "language_model.model.layers.1.self_attn.q_proj",
        "language_model.model.layers.1.self_attn.v_proj",
    ]
    trainable, total = count_parameters(model)
    assert trainable == sum(v.size for v in adapter_weights(model).values()) and trainable < total
    np.testing.assert_array_equal(_logits(model, ids), base)  # B = 0: exact identity
    _randomize_b(model)
    assert np.abs(_logits(model, ids) - base).max() > 1e-4
    with lora_disabled(model):
        np.testing.assert_array_equal(_logits(model, ids), base)
    assert np.abs(_logits(model, ids) - base).max() > 1e-4  # scales restored


def test_bad_target_names_the_fix(tiny_dir):
    model, _ = _load(tiny_dir)
    with pytest.raises(ValueError, match="available names"):
        apply_lora(model, LoraConfig(target_modules=("qkv",)))


def test_saved_adapter_loads_in_mlx_vlm_with_same_logits(tiny_dir, tmp_path):
    model, _ = _load(tiny_dir)
    apply_lora(model, LoraConfig(rank=4, alpha=8))
    _randomize_b(model)
    ids = _ids()
    ours = _logits(model, ids)
    save_adapter(model, tmp_path / "ad")
    assert {p.name for p in (tmp_path / "ad").iterdir()} == {
        "adapters.safetensors",
        "adapter_config.json",
    }
    loaded, _ = _load(tiny_dir, adapter_path=str(tmp_path / "ad"))
    np.testing.assert_allclose(_logits(loaded, ids), ours, atol=1e-5)
    # and our own loader (resume / eval path)
    fresh, _ = _load(tiny_dir)
    cfg = attach_adapter(fresh, tmp_path / "ad")
    assert cfg.rank == 4 and cfg.alpha == 8
    np.testing.assert_array_equal(_logits(fresh, ids), ours)


def test_qlora_on_4bit_base(tiny_dir, tmp_path):
    model, _ = _load(tiny_dir)
    # 4-bit language-model linears (QLoRA base); dims of the tiny model divide group size 32
    nn.quantize(
        model,
        group_size=32,
        bits=4,
        class_predicate=lambda p, m: (
            isinstance(m, nn.Linear) and p.startswith("language_model.model.layers")
        ),
    )
    apply_lora(model, LoraConfig(rank=4, alpha=8))
    layer = model.language_model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, LoRALinear) and isinstance(layer.linear, nn.QuantizedLinear)
    _randomize_b(model)
    ids = _ids()
    ours = _logits(model, ids)

    # gradients reach only A/B of the quantized layers
    def loss(m):
        return m.language_model(ids).logits.sum()

    grads = nn.value_and_grad(model, loss)(model)[1]
    from mlx.utils import tree_flatten

    gnames = [k for k, _ in tree_flatten(grads)]
    assert gnames and all(k.endswith((".lora_a", ".lora_b")) for k in gnames)
    save_adapter(model, tmp_path / "q")
    # mlx-vlm re-quantizes the float base from base_quantization before attaching LoRA
    loaded, _ = _load(tiny_dir, adapter_path=str(tmp_path / "q"))
    assert isinstance(
        loaded.language_model.model.layers[0].self_attn.q_proj.linear, nn.QuantizedLinear
    )
    np.testing.assert_allclose(_logits(loaded, ids), ours, atol=1e-5)


@pytest.mark.parametrize("alpha", [16.0, 12.0])
def test_update_is_alpha_over_rank_times_x_a_b_with_its_gradients(alpha):
    """y = W x + b + (alpha / r) (x A) B, the PEFT convention, values and gradients; with the
    default alpha / r = 2 bit for bit the numbers of scaling the (rows, out) product."""
    k = mx.random.split(mx.random.key(3), 4)
    base = nn.Linear(32, 48)
    lora = LoRALinear(base, rank=8, scale=alpha / 8, dropout=0.0, key=k[0])
    lora.lora_b = 0.1 * mx.random.normal(lora.lora_b.shape, key=k[1])
    x = mx.random.normal((3, 5, 32), key=k[2])
    cot = mx.random.normal((3, 5, 48), key=k[3])

    def reference(a, b):
        return base(x) + (alpha / 8) * ((x @ a) @ b)

    def ours(a, b):
        lora.lora_a, lora.lora_b = a, b
        return lora(x)

    primals = [lora.lora_a, lora.lora_b]
    (want,), want_grads = mx.vjp(reference, primals, [cot])
    (got,), got_grads = mx.vjp(ours, primals, [cot])
    for w, g in zip([want, *want_grads], [got, *got_grads]):
        if alpha / 8 == 2.0:  # a power of two scales exactly
            assert mx.array_equal(w, g)
        else:
            np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-5, atol=1e-6)
