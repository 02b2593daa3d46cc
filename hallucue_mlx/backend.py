"""Device, dtype and BLAS: what MLX runs on here and how fast.

fp32 on CPU (bf16 and quantized matmuls have no fast CPU path), bf16 on Metal/CUDA.
"""

from __future__ import annotations

DTYPES = ("auto", "float32", "bfloat16", "float16")


def backend_name() -> str:
    """'metal', 'cuda' or 'cpu': the backend MLX's default device runs on."""
    import mlx.core as mx

    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and cuda.is_available():
        return "cuda"
    return "gpu"


def dtype_name(choice: str = "auto") -> str:
    """Resolve "auto" to float32 on CPU and bfloat16 on a GPU; pass explicit choices through."""
    if choice not in DTYPES:
        raise ValueError(f"dtype {choice!r} is not one of {DTYPES}")
    if choice != "auto":
        return choice
    return "float32" if backend_name() == "cpu" else "bfloat16"


def resolve_dtype(choice: str = "auto"):
    """The mlx dtype for a choice in DTYPES (see dtype_name)."""
    import mlx.core as mx

    return getattr(mx, dtype_name(choice))
