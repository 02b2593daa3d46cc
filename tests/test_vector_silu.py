"""models/vector_silu.py: the SwiGLU that MLX's x86-64 CPU backend computes without its scalar
exp. Same values and gradients as mx.sigmoid's to float32 noise, the same parameter names, used
by load_model exactly where `backend.vector_silu_wanted()` says, and never on an MLP that is not
a SiLU one."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hallucue_mlx import backend  # noqa: E402
from hallucue_mlx.models import arch, load_model  # noqa: E402
from hallucue_mlx.models import vector_silu as vs  # noqa: E402
from hallucue_mlx.models.lora import LoraConfig, apply_lora  # noqa: E402


# float64 references
def _silu64(g: np.ndarray) -> np.ndarray:
    return g / (1.0 + np.exp(-g))


def _dsilu64(g: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-g))
    return s + g * s * (1.0 - s)


def _inputs() -> tuple[mx.array, mx.array]:
    g = mx.concatenate(
        [mx.linspace(-100, 100, 40001), 4 * mx.random.normal((8192,), key=mx.random.key(1))]
    )
    u = mx.random.normal(g.shape, key=mx.random.key(2))
    return g, u


def test_swiglu_values_match_silu_to_float32_noise():
    g, u = _inputs()
    g64, u64 = np.array(g, np.float64), np.array(u, np.float64)
    ours = np.array(vs.swiglu(g, mx.ones_like(g)), np.float64)
    mlx_own = np.array(nn.silu(g), np.float64)
    ref = _silu64(g64)
    # absolute error within a few float32 steps of the O(1) activations, the same order as
    # MLX's own sigmoid; relative error small wherever the activation is not vanishing (on the
    # negative side 1 + tanh(x / 2) cancels: 4e-5 relative at silu = -0.01)
    assert np.abs(ours - ref).max() < 5e-6
    assert np.abs(mlx_own - ref).max() < 5e-6
    big = np.abs(ref) > 1e-2
    assert (np.abs(ours - ref)[big] / np.abs(ref[big])).max() < 1e-4
    prod = np.array(vs.swiglu(g, u), np.float64)
    assert np.abs(prod - ref * u64).max() < 5e-6 * max(1.0, np.abs(u64).max())
    assert np.isfinite(ours).all()


def test_swiglu_gradient_matches_silu_gradient():
    g, u = _inputs()
    ct = mx.random.normal(g.shape, key=mx.random.key(3))
    _, (dg, du) = mx.vjp(vs.swiglu, [g, u], [ct])
    g64, u64, c64 = (np.array(a, np.float64) for a in (g, u, ct))
    want_dg = c64 * u64 * _dsilu64(g64)
    want_du = c64 * _silu64(g64)
    scale = max(1.0, np.abs(c64 * u64).max())
    assert np.abs(np.array(dg, np.float64) - want_dg).max() < 1e-5 * scale
    assert np.abs(np.array(du, np.float64) - want_du).max() < 1e-5 * np.abs(c64).max()
    # and through mx.grad of a composite, as value_and_grad uses it
    f = lambda a: (vs.swiglu(a, u) ** 2).sum()  # noqa: E731
    f_exact = lambda a: ((nn.silu(a) * u) ** 2).sum()  # noqa: E731
    x = 3 * mx.random.normal(u.shape, key=mx.random.key(4))
    assert mx.allclose(mx.grad(f)(x), mx.grad(f_exact)(x), rtol=1e-4, atol=1e-5).item()


class _GeluMLP(nn.Module):
    """Gemma's shape: gate/up/down projections, but a GELU."""

    def __init__(self, d: int, h: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, h, bias=False)
        self.up_proj = nn.Linear(d, h, bias=False)
        self.down_proj = nn.Linear(h, d, bias=False)

    def __call__(self, x):
        return self.down_proj(nn.gelu(self.gate_proj(x)) * self.up_proj(x))


class _Layer(nn.Module):
    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp


def test_only_silu_mlps_are_swapped_and_they_compute_the_same():
    from mlx_vlm.models.mlp import SwiGLUMLP

    silu_layer, gelu_layer = _Layer(SwiGLUMLP(32, 96)), _Layer(_GeluMLP(32, 96))
    x = mx.random.normal((3, 5, 32), key=mx.random.key(5))
    before = silu_layer.mlp(x)
    assert vs.use_vector_silu([silu_layer, gelu_layer], 32) == 1
    assert isinstance(silu_layer.mlp, vs.SwiGLU)
    assert isinstance(gelu_layer.mlp, _GeluMLP)  # the GELU MLP would have changed its output
    assert mx.allclose(silu_layer.mlp(x), before, rtol=1e-4, atol=1e-6).item()
    assert vs.use_vector_silu([silu_layer], 32) == 0  # idempotent


def test_wanted_only_on_an_x86_cpu_and_never_when_opted_out(monkeypatch):
    wanted = backend.vector_silu_wanted
    monkeypatch.delenv(backend.EXACT_SILU_ENV, raising=False)
    monkeypatch.setattr(backend.platform, "machine", lambda: "x86_64")
    assert wanted() == (mx.default_device().type == mx.DeviceType.cpu)
    monkeypatch.setattr(backend.platform, "machine", lambda: "arm64")
    assert not wanted()
    monkeypatch.setattr(backend.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv(backend.EXACT_SILU_ENV, "1")
    assert not wanted()


@pytest.mark.parametrize("family", ["qwen2_5_vl", "idefics3"])
def test_load_model_swaps_where_wanted_and_keeps_names_logits_and_lora(
    family, tmp_path, build_tiny, monkeypatch
):
    path = build_tiny(tmp_path / family, family=family)
    monkeypatch.setenv(backend.EXACT_SILU_ENV, "1")
    exact, _ = load_model(path, dtype="float32")
    monkeypatch.delenv(backend.EXACT_SILU_ENV)
    model, _ = load_model(path, dtype="float32")
    layers = arch.text_stack(model).layers
    swapped = [isinstance(layer.mlp, vs.SwiGLU) for layer in layers]
    assert swapped == [backend.vector_silu_wanted()] * len(layers)
    assert not any(isinstance(layer.mlp, vs.SwiGLU) for layer in arch.text_stack(exact).layers)

    # same parameter names and values: adapters and checkpoints are unchanged
    flat, flat_exact = (
        dict(tree_flatten(model.parameters())),
        dict(tree_flatten(exact.parameters())),
    )
    assert flat.keys() == flat_exact.keys()
    for m in (model, exact):
        apply_lora(m, LoraConfig())
    names = lambda m: sorted(k for k, _ in tree_flatten(m.trainable_parameters()))  # noqa: E731
    assert names(model) == names(exact) and any("mlp.gate_proj" in k for k in names(model))
    model.update(exact.parameters())

    ids = mx.array([[3, 17, 42, 5, 9, 11, 60, 2]])
    positions = arch.text_positions(ids.shape[1])

    def out(m):
        return arch.lm_head(m, arch.text_forward(m, ids, positions=positions))

    assert mx.allclose(out(model), out(exact), rtol=1e-4, atol=1e-4).item()

    def lora_grads(m):
        loss = lambda: (out(m) ** 2).mean()  # noqa: E731
        return dict(tree_flatten(nn.value_and_grad(m, loss)()[1]))

    g, g_exact = lora_grads(model), lora_grads(exact)
    for k in g_exact:
        assert mx.allclose(g[k], g_exact[k], rtol=1e-3, atol=1e-6).item(), k
