"""hallucue-mlx: the Hallucination-as-Cue framework (arXiv 2604.03179) on MLX.

Flow of training: item -> corruption -> prompt -> rollout -> reward -> advantage -> loss -> adapter.
Flow of evaluation: item -> corruption -> answer -> record -> metric -> report.

The Python API (hallucue_mlx.api) is available from the package itself:

    import hallucue_mlx as hm

    folder = hm.run(overrides={"train.steps": 20}, quick=True)
    hm.evaluate(n=50, conditions=["none", "blank"]).by_condition["blank"]["accuracy"]

Its names load on first use, so `import hallucue_mlx` (and the command's --help) loads no MLX.
Six of them share their name with a module (train, evaluate, corrupt, gallery, report, sweep): on the
package the name is always the function, so import those modules by their full name
(`from hallucue_mlx.train import TrainResult`), not as attributes of the package.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Before anything imports MLX: bind its CPU matmuls to a fast BLAS checked on this CPU (blas.py,
# the one place that knows about the CPU; a no-op on macOS and when turned off).
from hallucue_mlx import blas as _blas  # noqa: E402

_blas.activate()

# The API's names, loaded from hallucue_mlx.api on first use.
__all__ = [
    "__version__",
    "BenchmarkError",
    "ConfigError",
    "CorruptionRecord",
    "EvalConfig",
    "EvalResult",
    "FolderBusy",
    "GridError",
    "GridInterrupted",
    "Item",
    "ModelLoadError",
    "ReportError",
    "ResumeMismatch",
    "RunConfig",
    "TrainResult",
    "TrainingDiverged",
    "corrupt",
    "evaluate",
    "gallery",
    "load_benchmark",
    "load_config",
    "load_model",
    "report",
    "run",
    "sweep",
    "train",
]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from hallucue_mlx.api import (
        BenchmarkError,
        ConfigError,
        CorruptionRecord,
        EvalConfig,
        EvalResult,
        FolderBusy,
        GridError,
        GridInterrupted,
        Item,
        ModelLoadError,
        ReportError,
        ResumeMismatch,
        RunConfig,
        TrainingDiverged,
        TrainResult,
        corrupt,
        evaluate,
        gallery,
        load_benchmark,
        load_config,
        load_model,
        report,
        run,
        sweep,
        train,
    )


def __getattr__(name: str) -> Any:
    """PEP 562: an API name, from hallucue_mlx.api (imported, with MLX, on the first one)."""
    if name in _API:
        from hallucue_mlx import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (what tab completion offers)."""
    return sorted(__all__)


class _Package(ModuleType):
    """The package's module type. Importing a submodule sets it as an attribute of the package;
    for the submodules named like an API function that would hide the function (and which
    one `hallucue_mlx.train` is would depend on what was imported first), so that one setting is
    dropped: the name stays the function's, through __getattr__."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
