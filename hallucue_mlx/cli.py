"""The `hallucue-mlx` command: parses arguments, loads config, calls into the library. Nothing else."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Hallucination-as-Cue on MLX: GRPO of small VLMs under blank-image, random-image and "
    "text-removal corruptions, and evaluation under the same corruptions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(
    help="List benchmarks and cache compact subsets for offline runs.", no_args_is_help=True
)
model_app = typer.Typer(
    help="The embedded model hallucue-tiny: where it is, how to rebuild it.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")


def _not_yet(name: str) -> None:
    typer.echo(f"`hallucue-mlx {name}` is not yet available in this version.", err=True)
    raise typer.Exit(2)


@app.command()
def doctor(reps: int = typer.Option(3, help="Timed repetitions of the 1024^3 matmul.")) -> None:
    """Print versions, the MLX backend and device, and a measured matmul speed."""
    from hallucue_mlx.backend import diagnose, print_diagnosis

    print_diagnosis(diagnose(reps=reps))


@app.command()
def run(
    config: str | None = typer.Option(
        None,
        "--config",
        help="Run config YAML, or a shipped one by name (default: the packaged default.yaml).",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a config key: section.key=value (YAML value), repeatable."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Run folder (default: the config's output.dir; with --quick, that plus -quick). Rerunning continues it.",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Smoke run: a few steps and items, every cell still run."
    ),
    force: bool = typer.Option(
        False, "--force", help="Discard earlier results in the run folder and start over."
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config with every key's help, then exit."
    ),
) -> None:
    """Run the whole comparison grid (train under each corruption x evaluate under each) and report."""
    import shlex
    import sys

    from hallucue_mlx.config import ConfigError, dump_yaml, load_config
    from hallucue_mlx.config import quick as quick_config
    from hallucue_mlx.data.bench import BenchmarkError
    from hallucue_mlx.grid import GridError, GridInterrupted, run_grid
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.train import TrainingDiverged

    try:
        cfg = load_config(config, set_)
        if print_config:
            typer.echo(dump_yaml(quick_config(cfg) if quick else cfg), nl=False)
            return
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    out = out or Path(cfg.output.dir + ("-quick" if quick else ""))
    again = "hallucue-mlx run " + " ".join(shlex.quote(a) for a in sys.argv[2:] if a != "--force")
    try:
        run_grid(cfg, out, quick=quick, force=force)
    except (GridInterrupted, KeyboardInterrupt) as e:
        typer.echo(
            f"\nstopped ({str(e) or 'Ctrl-C'}); finished cells and checkpoints are kept in {out}. "
            f"Continue with: {again.strip()}",
            err=True,
        )
        raise typer.Exit(130) from None
    except ModelLoadError as e:
        typer.echo(
            f"error: {e} (in a run config the model is model.id: --set model.id=...)", err=True
        )
        raise typer.Exit(1) from None
    except TrainingDiverged as e:
        typer.echo(
            f"error: {e} Rerunning continues from that checkpoint: {again.strip()}", err=True
        )
        raise typer.Exit(1) from None
    except (ConfigError, GridError, BenchmarkError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


@app.command()
def train(
    config: Path | None = typer.Option(
        None, "--config", help="YAML/JSON file of TrainConfig fields."
    ),
    corruption: str | None = typer.Option(None, help="none, blank, random or text_removal."),
    ratio: float | None = typer.Option(None, help="Share of training items corrupted (0-1)."),
    steps: int | None = typer.Option(None, help="Training steps (rollout batches)."),
    out: Path = typer.Option(
        Path("runs/train"), help="Output folder (metrics, checkpoints, adapter)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last checkpoint in --out."
    ),
    model: str | None = typer.Option(None, help="Base model directory or Hugging Face id."),
    set_: list[str] = typer.Option([], "--set", help="Override any TrainConfig field: key=value."),
) -> None:
    """LoRA GRPO training with corruption-aware rollouts."""
    from hallucue_mlx.train import load_config_file, make_config, resume_hint
    from hallucue_mlx.train import train as run_train

    overrides: dict = load_config_file(config) if config else {}
    for kv in set_:
        if "=" not in kv:
            raise typer.BadParameter(f"--set takes key=value, got {kv!r}")
        k, v = kv.split("=", 1)
        overrides[k.strip()] = v.strip()
    for k, v in (
        ("corruption", corruption),
        ("corruption_ratio", ratio),
        ("steps", steps),
        ("model", model),
    ):
        if v is not None:
            overrides[k] = v
    try:
        cfg = make_config(**overrides)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    import shlex
    import sys

    from hallucue_mlx.data.bench import BenchmarkError
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.train import TrainingDiverged

    # the same command with --resume: the saved settings win, and --steps etc. stay as given
    again = "hallucue-mlx train " + " ".join(
        shlex.quote(a) for a in sys.argv[2:] if a != "--resume"
    )
    again = f"{again.strip()} --resume" if sys.argv[2:] else resume_hint(out)
    try:
        result = run_train(cfg, None, out, resume=resume)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, the last checkpoint stays
        typer.echo(
            f"\nStopped at once (second Ctrl-C); the last checkpoint in {out} is kept. Resume with: {again}",
            err=True,
        )
        raise typer.Exit(130) from None
    except (TrainingDiverged, ModelLoadError, BenchmarkError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if result.interrupted:
        typer.echo(
            f"Stopped after step {result.steps_done}; checkpoint saved. Resume with: {again}",
            err=True,
        )
        raise typer.Exit(130)
    typer.echo(f"Done: {result.steps_done} steps; adapter in {result.adapter_dir}")


_EVAL_FLAGS = {
    "conditions": "--corruption",
    "ratio": "--ratio",
    "temperature": "--temperature",
    "samples_per_item": "--samples",
    "max_tokens": "--max-tokens",
    "batch_size": "--batch-size",
    "top_p": "--top-p",
    "seed": "--seed",
    "template": "--template",
}


@app.command(name="eval")
def eval_(
    model: str = typer.Option(
        "hallucue-tiny",
        "--model",
        help="Model directory or Hugging Face id (default: the embedded hallucue-tiny).",
    ),
    adapter: str | None = typer.Option(None, "--adapter", help="LoRA adapter directory to apply."),
    benchmark: str = typer.Option(
        "synth", "--benchmark", "-b", help="Benchmark name (see `data list`)."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Split (default: the benchmark's evaluation split)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Local copy of the benchmark (folder or file)."
    ),
    n: int | None = typer.Option(
        None, "--n", help="Seeded stratified subset of N items (default: all)."
    ),
    corruption: str = typer.Option(
        "none,blank,random,text_removal",
        "--corruption",
        help="Comma-separated conditions: none, blank, random, text_removal.",
    ),
    ratio: float = typer.Option(
        1.0, "--ratio", help="Share of items corrupted under each corruption (0-1)."
    ),
    temperature: float = typer.Option(
        0.0, "--temperature", help="Sampling temperature (0: greedy)."
    ),
    samples: int = typer.Option(
        1, "--samples", help="Responses per item (more than 1 needs --temperature > 0)."
    ),
    max_tokens: int = typer.Option(
        64, "--max-tokens", help="Maximum response tokens (reasoning models need 1024+)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts decoded together."),
    top_p: float = typer.Option(
        1.0, "--top-p", help="Nucleus sampling mass when sampling (1: off)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the item subset, corruptions and sampling."
    ),
    template: str = typer.Option(
        "auto",
        "--template",
        help="Prompt template: easyr1, short, or auto (short for hallucue-tiny, else easyr1).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Output folder (default: runs/eval/<benchmark>-<split>-<model>); reruns resume.",
    ),
) -> None:
    """Evaluate a model (and adapter) on a benchmark under each corruption."""
    from hallucue_mlx.data.bench import BenchmarkError, get_adapter
    from hallucue_mlx.evaluate import EvalConfig, EvalConfigError, evaluate_benchmark
    from hallucue_mlx.models.load import ModelLoadError
    from hallucue_mlx.prompts import resolve_template

    if n is not None and n <= 0:
        raise typer.BadParameter(
            f"{n} is invalid; valid: an integer >= 1 (omit for the whole split)", param_hint="--n"
        )
    try:
        cfg = EvalConfig(
            conditions=corruption,
            ratio=ratio,
            temperature=temperature,
            samples_per_item=samples,
            max_tokens=max_tokens,
            batch_size=batch_size,
            top_p=top_p,
            seed=seed,
            template=resolve_template(template, model),
        )
    except EvalConfigError as e:
        raise typer.BadParameter(str(e), param_hint=_EVAL_FLAGS.get(e.key, e.key)) from None
    try:
        split = split or get_adapter(benchmark).default_split
        out = out or Path("runs/eval") / f"{benchmark}-{split or 'all'}-{Path(model).name}"
        evaluate_benchmark(
            model, benchmark, cfg, adapter=adapter, split=split, data=data, n=n, out_dir=out
        )
    except (BenchmarkError, ModelLoadError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        import shlex
        import sys

        again = "hallucue-mlx eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        typer.echo(
            f"\nstopped (Ctrl-C); finished conditions are kept in {out}. Continue with: {again.strip()}",
            err=True,
        )
        raise typer.Exit(130) from None


@app.command()
def corrupt(
    benchmark: str = typer.Option(
        "synth", "--benchmark", "-b", help="Benchmark name (see `data list`)."
    ),
    n: int = typer.Option(6, "--n", help="Number of items (rows of the picture)."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the subset and of the random-image donors."
    ),
    out: Path = typer.Option(Path("gallery.png"), "--out", help="PNG file to write."),
    data: str | None = typer.Option(
        None, "--data", help="Local copy of the benchmark (folder or file)."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Split (default: the benchmark's evaluation split)."
    ),
) -> None:
    """Write a gallery picture of items under every corruption, side by side."""
    from hallucue_mlx.data.bench import BenchmarkError
    from hallucue_mlx.gallery import gallery_for

    try:
        path = gallery_for(benchmark, out, n=n, seed=seed, split=split, path=data)
    except BenchmarkError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}")


@app.command()
def report(
    run_dir: Path = typer.Argument(
        ..., help="Run folder written by `hallucue-mlx run` (finished or partial)."
    ),
) -> None:
    """Rebuild report.md and figures of a run folder from its records."""
    from hallucue_mlx.report import ReportError, write_report

    try:
        path = write_report(run_dir)
    except ReportError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"wrote {path} (figures in {path.parent / 'figures'}, tables in {path.parent / 'tables'})"
    )


@data_app.command("list")
def data_list() -> None:
    """List the benchmarks hallucue-mlx can load."""
    from hallucue_mlx.data.bench import print_benchmarks

    print_benchmarks()


@data_app.command("prepare")
def data_prepare(
    benchmark: str = typer.Argument(..., help="Benchmark name (see `data list`)."),
    n: int | None = typer.Option(None, "--n", help="Subset size (default: the whole split)."),
    split: str | None = typer.Option(
        None, "--split", help="Split (default: the benchmark's evaluation split)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified subset."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: data/<benchmark>-<split>-n<N>-s<seed>)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Read from a local copy instead of the hub."
    ),
) -> None:
    """Cache a seeded compact subset of a benchmark locally (images included)."""
    from hallucue_mlx.data.bench import BenchmarkError, get_adapter
    from hallucue_mlx.data.subset import prepare_subset

    try:
        split = split or get_adapter(benchmark).default_split
        out = out or Path("data") / f"{benchmark}-{split}-n{n if n is not None else 'all'}-s{seed}"
        manifest = prepare_subset(benchmark, n, out, split=split, seed=seed, path=data)
    except BenchmarkError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"wrote {len(manifest.ids)} items of {benchmark}/{split} to {out} "
        f"(content hash {manifest.content_hash[:12]})"
    )


@model_app.command("path")
def model_path() -> None:
    """Print the directory of the shipped hallucue-tiny model."""
    from hallucue_mlx.models import embedded_model_path

    typer.echo(str(embedded_model_path()))


@model_app.command("build-tiny")
def model_build_tiny(
    out: Path = typer.Option(..., help="Output directory for the rebuilt model."),
    seed: int = typer.Option(0, help="Seed of the build (the shipped model uses 0)."),
    max_minutes: float = typer.Option(56.0, help="Wall-clock budget of the warm-up."),
) -> None:
    """Rebuild hallucue-tiny deterministically from its seed (about 30-45 min on 2 CPU cores)."""
    import json

    from hallucue_mlx.warmup import WarmupConfig, build_tiny

    result = build_tiny(out, WarmupConfig(seed=seed, max_minutes=max_minutes), log=typer.echo)
    typer.echo(json.dumps(result["eval"], indent=2))


def main() -> None:
    from hallucue_mlx.backend import ensure_fast_blas

    # On Linux CPU, restarts this process once with OpenBLAS preloaded (HALLUCUE_NO_FAST_BLAS=1 skips).
    ensure_fast_blas()
    app()


if __name__ == "__main__":
    main()
