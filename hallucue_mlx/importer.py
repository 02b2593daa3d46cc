"""`hallucue-mlx import`: a checkpoint trained elsewhere (say GRPO-BI of a 7B model with EasyR1 on
a GPU cluster) as one more row of a run folder's corruption matrix.

    import_checkpoint(run_dir, checkpoint, name) -> ImportResult (results.json's path among it)

The checkpoint is a Hugging Face folder (config.json, *.safetensors shards, tokenizer, processor
and chat-template files), converted by mlx-vlm's own `convert` into
run_dir/imported/<name>/model, or a folder already in MLX format (mlx-vlm's weights, marked
"format": "mlx" in their safetensors headers), used where it is. The model is then evaluated as the
grid evaluates its own: on the run's items (grid.load_data of the config in the run's manifest),
with the run's evaluation settings (config.eval_config_for; the prompt template may be given),
under every eval condition, into eval/<name>/<benchmark>-<split>/. imported.json records it
(runfolder.read_imported), so results.json (grid.results), a resumed `hallucue-mlx run` and
`hallucue-mlx report` keep its row, labelled with its name.

Rerunning the same import does no work: a finished conversion and finished evaluation
conditions are kept (evaluate's done parts), as in the grid. A name already taken in the run
(one of its models or their labels, a condition, an eval/ folder, or another import) is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from hallucue_mlx import runfolder
from hallucue_mlx.config import (
    ConfigError,
    RunConfig,
    config_hash,
    eval_config_for,
    from_dict,
    image_sizes,
    prompt_template,
)
from hallucue_mlx.corrupt import CORRUPTIONS
from hallucue_mlx.evaluate import evaluate
from hallucue_mlx.grid import GridData, load_data, models, targets, write_results
from hallucue_mlx.models.load import (
    ModelLoadError,
    check_safetensors,
    family_of_config,
    load_model,
    read_config,
)
from hallucue_mlx.prompts import TEMPLATES, resolve_template
from hallucue_mlx.report import write_report
from hallucue_mlx.report.labels import MODEL_LABELS
from hallucue_mlx.runfolder import GridError, Timing

HUGGING_FACE, MLX = "huggingface", "mlx"
# mlx-vlm's conversion choices (mlx_vlm.utils.MODEL_CONVERSION_DTYPES; affine quantization)
DTYPES = ("float16", "bfloat16", "float32")
QUANT_BITS = (2, 3, 4, 5, 6, 8)
QUANT_GROUP_SIZE = 64
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
# The options an import was made with: a rerun under the same name must give the same ones.
_SAME = ("source_weights", "dtype", "quantize", "template")


@dataclass
class ImportResult:
    """What one call did: the model folder evaluated, whether this call converted it, the
    evaluation targets it evaluated (empty when all were kept), and results.json (None while
    the run itself is unfinished)."""

    name: str
    model_dir: Path
    converted: bool
    evaluated: list[str]
    results: Path | None


# ================================================================ checks


def check_options(dtype: str | None, quantize: int | None, template: str | None) -> None:
    """ConfigError naming the allowed values of a bad --dtype, --quantize or --template."""
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}", "dtype")
    if quantize is not None and quantize not in QUANT_BITS:
        raise ConfigError(
            f"--quantize {quantize!r} is not one of {', '.join(map(str, QUANT_BITS))} (bits)",
            "quantize",
        )
    if template is not None and template != "auto" and template not in TEMPLATES:
        raise ConfigError(
            f"--template {template!r} is not one of auto, {', '.join(sorted(TEMPLATES))}",
            "template",
        )


def run_config(out: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The config a run folder was made with (its manifest's), and the manifest; GridError when
    `out` is not a run folder this version can continue."""
    if (out / runfolder.SWEEP).is_file():
        values = sorted(p.name for p in out.iterdir() if (p / runfolder.MANIFEST).is_file())
        raise GridError(
            f"{out} is a sweep folder; import into one of its run folders"
            + (f", e.g. --into {out / values[0]}" if values else "")
        )
    if not out.is_dir():
        raise GridError(
            f"run folder {out} does not exist; --into takes a folder `hallucue-mlx run` wrote"
        )
    path = out / runfolder.MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise GridError(
            f"{out} is not a run folder (no readable {runfolder.MANIFEST} of `hallucue-mlx "
            "run`); run the grid there first, or pass --into the folder it wrote"
        )
    try:
        cfg = from_dict(manifest["config"])
    except ConfigError as e:
        raise GridError(
            f"the config in {path} cannot be read by this version of hallucue-mlx ({e}); import "
            "with the version that made the run"
        ) from None
    if config_hash(cfg) != manifest.get("config_hash"):
        raise GridError(
            f"the config in {path} does not give its config_hash (edited by hand, or made by "
            "another version of hallucue-mlx); import with the version that made the run"
        )
    return cfg, manifest


def check_name(cfg: RunConfig, out: Path, name: str, imported: dict[str, dict]) -> None:
    """GridError unless `name` is a folder name no model, label or condition of the run has."""
    if not NAME.match(name):
        raise GridError(
            f"--name {name!r} cannot name a model folder: use letters, digits and . _ + - "
            "(starting with a letter or digit, at most 64 characters), e.g. GRPO-BI-7B"
        )
    taken: dict[str, str] = {}
    for c in CORRUPTIONS:
        taken[c] = f"the corruption {c!r} (a trained model's folder name)"
    for m in runfolder.CONTROL_MODELS:
        taken[m] = f"the control model {m!r} (grid.random_reward_control's folder name)"
    for m, label in MODEL_LABELS.items():
        taken[label] = f"the report's label of the model {m!r}"
    for m in models(cfg):
        taken[m] = f"the run's model {m!r}"
    evals = out / runfolder.EVAL_DIR
    for d in sorted(evals.iterdir()) if evals.is_dir() else []:
        if d.is_dir() and d.name not in imported:
            taken.setdefault(d.name, f"the folder {runfolder.EVAL_DIR}/{d.name}")
    for other in imported:
        if other != name:
            taken[other] = f"the imported model {other!r}"
    for key, what in taken.items():
        if key.casefold() == name.casefold():
            raise GridError(
                f"--name {name!r} clashes with {what} in {out}; pick another name, e.g. one "
                f"with the model's size or source: {name}-7B"
            )


def _headers(src: Path) -> list[dict[str, Any]]:
    """The JSON headers of the folder's *.safetensors files (tensor names, dtypes, metadata)."""
    out = []
    for f in sorted(src.glob("*.safetensors")):
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            out.append(json.loads(fh.read(n)))
    return out


def inspect_checkpoint(checkpoint: str | Path) -> tuple[Path, str]:
    """(the folder, HUGGING_FACE or MLX) of a checkpoint fit to import; ModelLoadError naming the
    fix when it lacks config.json or weights, its weights are damaged, or its architecture is
    not one this project (and mlx-vlm) can load."""
    src = Path(checkpoint).expanduser()
    if not src.is_dir():
        raise ModelLoadError(
            f"--model {str(checkpoint)!r} is not a folder; give the checkpoint folder holding "
            "config.json and *.safetensors (EasyR1: <checkpoint>/actor/huggingface after "
            "merging the shards)"
        )
    if not (src / "config.json").is_file():
        raise ModelLoadError(
            f"{src} has no config.json; give the folder of a Hugging Face checkpoint (config.json, "
            "*.safetensors, tokenizer and processor files; EasyR1 writes them to "
            "<checkpoint>/actor/huggingface)"
        )
    # EasyR1 keeps the FSDP shards (model_world_size_W_rank_R.pt) in actor/, and config and
    # tokenizer in actor/huggingface/, where its merger writes the weights
    shards = sorted(p for d in (src, src.parent) for p in d.glob("*rank*.pt"))
    if shards and not any(src.glob("*.safetensors")):
        raise ModelLoadError(
            f"{src} has no *.safetensors weights, and {shards[0].parent} holds sharded training "
            f"state ({shards[0].name}, ...): merge the shards into a Hugging Face checkpoint "
            f"first (EasyR1: python scripts/model_merger.py --local_dir {shards[0].parent}) and "
            "import the folder it writes the weights to"
        )
    check_safetensors(src)
    _check_index(src)
    family_of_config(read_config(src), str(src / "config.json"))
    formats = {str((h.get("__metadata__") or {}).get("format")) for h in _headers(src)}
    return src.resolve(), MLX if formats == {MLX} else HUGGING_FACE


def _check_index(src: Path) -> None:
    """Every shard model.safetensors.index.json lists is there (mlx-vlm skips missing ones)."""
    index = src / "model.safetensors.index.json"
    if not index.is_file():
        return
    try:
        listed = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        if not all(isinstance(f, str) and runfolder.is_child_name(f) for f in listed):
            raise ValueError("weight_map must map tensor names to shard file names in the folder")
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise ModelLoadError(f"{index} cannot be read ({e}); copy it again") from None
    missing = sorted(f for f in listed if not (src / f).is_file())
    if missing:
        raise ModelLoadError(
            f"{src} lacks {len(missing)} weight shard(s) its index lists ({', '.join(missing[:3])}); "
            "copy the whole checkpoint folder"
        )


def _check_data(out: Path, manifest: dict[str, Any], data: GridData) -> None:
    """GridError when the run's evaluation data no longer is what its models were scored on."""
    for key, sub in data.subsets.items():
        was = (manifest.get("subsets") or {}).get(key, {}).get("content_hash")
        if was is not None and was != sub["content_hash"]:
            raise GridError(
                f"the data of {key} changed since {out} was run (content hash {was[:12]} -> "
                f"{sub['content_hash'][:12]}), so the imported model would be scored on other "
                "items than the run's models; restore the data the run used (the paths in its "
                "manifest.json)"
            )


def _check_same(out: Path, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """GridError when a rerun under `name` gives another checkpoint or other options."""
    diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in _SAME if old.get(k) != new[k]]
    if diff:
        raise GridError(
            f"{name!r} is already imported into {out} from {old.get('source')} with other "
            f"weights or options ({'; '.join(diff)}); import this one under another --name, or "
            "repeat the first import's --model, --dtype, --quantize and --template to continue it"
        )


# ================================================================ conversion


def convert_checkpoint(
    src: Path, dst: Path, dtype: str | None = None, quantize: int | None = None, quiet: bool = True
) -> None:
    """mlx-vlm's conversion of the checkpoint folder `src` into `dst` (weights renamed and laid
    out for mlx-vlm's model class, cast to `dtype`, quantized to `quantize` bits if given; the
    tokenizer, processor and chat template beside them). Written under a temporary name and
    renamed, so `dst` exists only once whole. ModelLoadError when mlx-vlm cannot convert it."""
    from mlx_vlm.convert import convert

    tmp = dst.with_name(f".{dst.name}.converting")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": False}
    if quantize is not None:
        kwargs.update(quantize=True, q_bits=quantize, q_group_size=QUANT_GROUP_SIZE)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed) if quiet else contextlib.nullcontext():
            convert(str(src), str(tmp), **kwargs)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as e:
        # OSError: a folder without the tokenizer or processor files mlx-vlm reads (a sparse
        # copy); a full disk is still reported as one (the CLI names the file and the fix)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.errno:
            raise
        raise ModelLoadError(_conversion_failed(src, e)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, dst)


def _conversion_failed(src: Path, e: Exception) -> str:
    """The message of a conversion mlx-vlm refused, with the likely cause named."""
    version = metadata.version("mlx-vlm")
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    names = {k for h in _headers(src) for k in h if k != "__metadata__"}
    hint = (
        "Its weights use the newer module names (model.language_model.*, model.visual.*), and "
        f"mlx-vlm {version} maps the names Qwen's releases use (model.layers.*, visual.*): "
        "re-save it with transformers 4.x's save_pretrained, which writes the release names, "
        "or use an mlx-vlm release that maps the newer ones; then import it again."
        if any(k.startswith("model.language_model.") for k in names)
        else "Its weight names or shapes do not match mlx-vlm's model class for its config.json "
        "(a different architecture, or a checkpoint from a modified model); convert it with "
        "a matching mlx-vlm version (python -m mlx_vlm convert --hf-path DIR --mlx-path OUT) "
        "and import OUT."
    )
    return f"mlx-vlm {version} could not convert {src} ({msg}). {hint}"


# ================================================================ evaluation


def _evaluate_all(
    cfg: RunConfig,
    out: Path,
    name: str,
    model_dir: Path,
    data: GridData,
    ecfg: Any,
    weights: dict[str, str],
    timing: Timing,
    quiet: bool,
) -> list[str]:
    """Evaluate the model on each of the run's targets not finished yet (loaded only if one is
    left); returns the targets evaluated."""
    conds = list(cfg.grid.eval_conditions)
    loaded = None
    done_now = []
    for t in targets(cfg):
        d = runfolder.eval_dir(out, name, t.dirname)
        items = data.eval_items[t.dirname]
        if runfolder.eval_done(d, conds, len(items), ecfg.samples_per_item):
            continue
        if loaded is None:
            loaded = load_model(model_dir, dtype=cfg.model.dtype, **image_sizes(cfg.model))
        if not quiet:
            print(f"{name} on {t.dirname}: {len(items)} items under {', '.join(conds)}")
        t0 = time.perf_counter()
        try:
            evaluate(
                *loaded,
                items,
                ecfg,
                out_dir=d,
                model_name=name,
                progress=not quiet,
                weights=weights,
            )
        finally:
            timing.add(f"eval {name} on {t.dirname}", time.perf_counter() - t0)
        done_now.append(t.dirname)
    return done_now


def _in_results(out: Path, name: str) -> bool:
    try:
        res = json.loads((out / runfolder.RESULTS).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(res, dict) and name in (res.get("imported") or {})


def _entry(
    src: Path, fmt: str, convert: bool, dtype: str | None, quantize: int | None, template: str
) -> dict[str, Any]:
    return {
        "source": str(src),
        "source_weights": runfolder.weights_fingerprint(src),
        "format": fmt,
        "converted": convert,
        "converter": f"mlx-vlm {metadata.version('mlx-vlm')}" if convert else None,
        "dtype": dtype,
        "quantize": quantize,
        "template": template,
        "done": False,
    }


def import_checkpoint(
    run_dir: str | Path,
    checkpoint: str | Path,
    name: str,
    *,
    dtype: str | None = None,
    quantize: int | None = None,
    template: str | None = None,
    quiet: bool = False,
    report: bool = True,
) -> ImportResult:
    """Bring `checkpoint` into the run folder `run_dir` as the model `name`: convert it (unless
    it is in MLX format and neither dtype nor quantize is given), evaluate it under every eval
    condition on the run's items, add its row to results.json and rebuild the report.

    dtype / quantize: the converted weights' dtype (default: the checkpoint's torch_dtype) and
    bits (affine, group size 64). template: the prompt template (default: the run's). Raises
    GridError (the folder or the name), ModelLoadError (the checkpoint), ConfigError (options).
    """
    out = Path(run_dir)
    check_options(dtype, quantize, template)
    cfg, manifest = run_config(out)
    imported = runfolder.read_imported(out)
    check_name(cfg, out, name, imported)
    src, fmt = inspect_checkpoint(checkpoint)
    tmpl = resolve_template(template, str(src)) if template else prompt_template(cfg)
    convert = fmt == HUGGING_FACE or dtype is not None or quantize is not None
    entry = _entry(src, fmt, convert, dtype, quantize, tmpl)
    old = imported.get(name)
    started = (
        runfolder.imported_model_dir(out, name).is_dir()
        or (out / runfolder.EVAL_DIR / name).is_dir()
    )
    if old is not None and started:  # an import that did no work yet may change its options
        _check_same(out, name, old, entry)
        entry["done"] = bool(old.get("done"))
    elif old is None and runfolder.imported_model_dir(out, name).is_dir():
        shutil.rmtree(runfolder.imported_model_dir(out, name))  # unrecorded: not known to fit
    data = load_data(cfg)
    _check_data(out, manifest, data)
    imported[name] = entry
    runfolder.write_imported(out, imported)  # the name is claimed before any work

    timing = Timing.load(out / runfolder.TIMING)
    model_dir = runfolder.imported_model_dir(out, name) if convert else src
    converted = False
    if convert and not (model_dir / "config.json").is_file():
        if not quiet:
            print(f"converting {src} with mlx-vlm into {model_dir}")
        t0 = time.perf_counter()
        convert_checkpoint(src, model_dir, dtype, quantize, quiet)
        timing.add(f"convert {name}", time.perf_counter() - t0)
        converted = True
    # the evaluations' resume check: the source's content and how it was converted
    weights = {"model": f"{entry['source_weights']}, {fmt}, dtype {dtype}, quantize {quantize}"}
    ecfg = replace(eval_config_for(cfg), template=tmpl)
    evaluated = _evaluate_all(cfg, out, name, model_dir, data, ecfg, weights, timing, quiet)

    path: Path | None = out / runfolder.RESULTS
    if converted or evaluated or not entry["done"] or not _in_results(out, name):
        entry["done"] = True
        runfolder.write_imported(out, imported)
        path = _write_results(cfg, out, data, timing, quiet, report)
    elif not quiet:
        print(f"{name} is already in {out}: nothing to do")
    return ImportResult(name, model_dir, converted, evaluated, path)


def _write_results(
    cfg: RunConfig, out: Path, data: GridData, timing: Timing, quiet: bool, report: bool
) -> Path | None:
    """results.json and the report with the new row; None (and a note) while the run's own
    cells are unfinished (no results.json yet): the run writes both, with this row, when it
    finishes."""
    try:
        path = write_results(cfg, out, data, timing)
    except GridError as e:
        if (out / runfolder.RESULTS).is_file():
            raise
        if not quiet:
            print(
                f"the run itself is not finished ({e}); `hallucue-mlx run` on {out} finishes it "
                "and writes results.json and the report with the imported row"
            )
        return None
    if report:
        md = write_report(out)
        if not quiet:
            print(f"results: {path}; report: {md} and {md.with_suffix('.html')}")
    return path


__all__ = [
    "DTYPES",
    "HUGGING_FACE",
    "MLX",
    "QUANT_BITS",
    "ImportResult",
    "check_name",
    "check_options",
    "convert_checkpoint",
    "import_checkpoint",
    "inspect_checkpoint",
    "run_config",
]
