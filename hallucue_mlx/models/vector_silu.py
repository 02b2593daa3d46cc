"""A SwiGLU MLP whose SiLU MLX's x86-64 CPU backend can compute without its scalar exp.

On Linux x86-64 MLX's CPU backend has no vector type in its SIMD layer, so `mx.sigmoid` (and
`nn.silu`, an exp per hidden unit of every MLP) costs about 16 ns per element against 0.5 ns
for an add: at 4 prompts x G=4 x 64 tokens the SiLUs are the largest elementwise cost of a
GRPO step on small models (scripts/bench_cpu_ops.py). Here sigmoid(x) = (1 + tanh(x / 2)) / 2
with tanh a rational function of degree 13/6 on [-7.9, 7.9] (clamped beyond, where float32
tanh is +-1 anyway): only multiply, add, divide and clip, which MLX's compiled CPU kernels run
at a few ns per element. Its absolute error is at most 4e-7 on tanh and 3e-6 on SiLU (MLX's
own: 1e-7 and 1.4e-6); relative to small negative SiLU outputs it is larger (4e-5 at -0.01),
where 1 + tanh(x / 2) cancels. The backward reuses the forward's sigmoid rather than
differentiating the rational function.

Used only where it pays: MLX's CPU device on x86-64 (`backend.vector_silu_wanted`, which
load_model asks). Metal, CUDA and Arm CPUs have vector exps; there the model keeps mlx-vlm's
MLP.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn

# tanh(x) ~ x * P(x^2) / Q(x^2) on [-CLAMP, CLAMP]: the minimax rational approximation that
# Eigen and XLA use for float32 tanh
CLAMP = 7.90531110763549805
P = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def _tanh(x: mx.array) -> mx.array:
    x = mx.clip(x, -CLAMP, CLAMP)
    x2 = x * x
    p = P[-1]
    for c in P[-2::-1]:
        p = p * x2 + c
    q = Q[-1]
    for c in Q[-2::-1]:
        q = q * x2 + c
    return x * p / q


def _sigmoid(x: mx.array) -> mx.array:
    return 0.5 + 0.5 * _tanh(0.5 * x)


@partial(mx.compile, shapeless=True)
def _forward(gate: mx.array, up: mx.array) -> tuple[mx.array, mx.array]:
    s = _sigmoid(gate)
    return gate * s * up, s


@partial(mx.compile, shapeless=True)
def _backward(
    gate: mx.array, up: mx.array, s: mx.array, cotangent: mx.array
) -> tuple[mx.array, mx.array]:
    gs = gate * s
    # d silu(g) / dg = s + g s (1 - s)
    return cotangent * up * (s + gs * (1.0 - s)), cotangent * gs


@mx.custom_function
def _swiglu_and_sigmoid(gate: mx.array, up: mx.array) -> tuple[mx.array, mx.array]:
    return _forward(gate, up)


@_swiglu_and_sigmoid.vjp
def _swiglu_vjp(primals, cotangents, outputs):
    # The forward's sigmoid is an output so the backward reads it instead of computing it
    # again: under nn.value_and_grad MLX runs compiled functions uncompiled (their inputs are
    # tracers), so each of the rational function's ~20 ops is a kernel of its own there.
    return _backward(*primals, outputs[1], cotangents[0])


def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up, as mlx-vlm's `swiglu`."""
    return _swiglu_and_sigmoid(gate, up)[0]


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) over the MLP's own projections (same parameter names)."""

    def __init__(self, gate_proj: nn.Module, up_proj: nn.Module, down_proj: nn.Module):
        super().__init__()
        self.gate_proj = gate_proj
        self.up_proj = up_proj
        self.down_proj = down_proj

    def __call__(self, x: mx.array) -> mx.array:
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


def _computes_swiglu(mlp: nn.Module, dims: int) -> bool:
    """True when mlp(x) == down(silu(gate(x)) * up(x)) on one random row: mlx-vlm's families
    hard-code SiLU whatever the config's hidden_act says, and a GELU MLP (Gemma) has the
    same three projections, so the structure alone does not tell."""
    x = mx.random.normal((1, dims), key=mx.random.key(0))
    want = mlp.down_proj(nn.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    return bool(mx.allclose(mlp(x), want, rtol=1e-3, atol=1e-5))


def use_vector_silu(layers: list[nn.Module], dims: int) -> int:
    """Swap each decoder layer's MLP for SwiGLU above where it computes
    down(silu(gate(x)) * up(x)) (checked on one random row of width `dims`); returns how many
    were swapped. Parameter names stay the same, so LoRA, adapters and checkpoints are as
    before."""
    n = 0
    for layer in layers:
        mlp = getattr(layer, "mlp", None)
        if mlp is None or isinstance(mlp, SwiGLU):
            continue
        parts = [getattr(mlp, k, None) for k in ("gate_proj", "up_proj", "down_proj")]
        if not all(isinstance(p, nn.Module) for p in parts) or not _computes_swiglu(mlp, dims):
            continue
        layer.mlp = SwiGLU(mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        n += 1
    return n
