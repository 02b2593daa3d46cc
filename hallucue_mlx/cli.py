"""The `hallucue-mlx` command: parses arguments, loads config, calls into the library. Nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Hallucination-as-Cue on MLX: GRPO of small VLMs under blank-image, random-image and "
    "text-removal corruptions, and evaluation under the same corruptions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="List benchmarks and cache compact subsets for offline runs.", no_args_is_help=True)
model_app = typer.Typer(help="The embedded model hallucue-tiny: where it is, how to rebuild it.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")


def _not_yet(name: str) -> None:
    typer.echo(f"`hallucue-mlx {name}` is not yet available in this version.", err=True)
    raise typer.Exit(2)


@app.command()
def doctor() -> None:
    """Print versions, the MLX backend and device, and a measured matmul speed."""
    _not_yet("doctor")


@app.command()
def run() -> None:
    """Run the whole comparison grid (train under each corruption x evaluate under each) and report."""
    _not_yet("run")


@app.command()
def train() -> None:
    """LoRA GRPO training with corruption-aware rollouts."""
    _not_yet("train")


@app.command(name="eval")
def eval_() -> None:
    """Evaluate a model (and adapter) on a benchmark under each corruption."""
    _not_yet("eval")


@app.command()
def corrupt() -> None:
    """Write a gallery picture of items under every corruption, side by side."""
    _not_yet("corrupt")


@app.command()
def report() -> None:
    """Rebuild report.md and figures of a run folder from its records."""
    _not_yet("report")


@data_app.command("list")
def data_list() -> None:
    """List the benchmarks hallucue-mlx can load."""
    _not_yet("data list")


@data_app.command("prepare")
def data_prepare() -> None:
    """Cache a seeded compact subset of a benchmark locally (images included)."""
    _not_yet("data prepare")


@model_app.command("path")
def model_path() -> None:
    """Print the directory of the shipped hallucue-tiny model."""
    _not_yet("model path")


@model_app.command("build-tiny")
def model_build_tiny(out: Optional[Path] = typer.Option(None, help="Output directory.")) -> None:
    """Rebuild hallucue-tiny deterministically from its seed."""
    _not_yet("model build-tiny")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
