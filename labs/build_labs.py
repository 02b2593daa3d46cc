"""Write the lab notebooks (labs/*.ipynb) from the cell texts below; run it after editing a lab.

    python labs/build_labs.py

The notebooks are the product; this file is their source, so a change to a lab is a readable diff.
Notebooks are written without outputs. Every lab reads HALLUCUE_LAB_SMALL=1 (tiny settings: what
CI executes, tests/test_labs.py) and HALLUCUE_LAB_OUT (where run folders go; default lab-runs/).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
EXPECTED = (
    json.loads((HERE / "expected.json").read_text()) if (HERE / "expected.json").is_file() else {}
)

SETUP = """\
import os
import warnings
from pathlib import Path

from IPython.display import Image, Markdown, display

import hallucue_mlx as hq

# Small settings: True runs the lab in a few minutes with tiny settings (a few training steps and
# items: the cells run, the numbers mean nothing); False runs it as written (the time in the
# header above). CI runs every lab small (HALLUCUE_LAB_SMALL=1).
SMALL = False
SMALL = SMALL or os.environ.get("HALLUCUE_LAB_SMALL") == "1"
OUT = Path(os.environ.get("HALLUCUE_LAB_OUT", "lab-runs"))  # where run folders go
OUT.mkdir(parents=True, exist_ok=True)
# without ipywidgets, libraries that draw notebook bars warn; progress then prints as lines
warnings.filterwarnings("ignore", message="IProgress not found")
print("hallucue-mlx", hq.__version__, "| SMALL settings" if SMALL else "| full settings")"""

PROGRESS = (
    "Progress shows below the cell while it runs (a line per task with the elapsed time and "
    "the ETA; on a CPU `run` starts one process per core, a sweep too, and the lines are "
    "the first one's; on "
    'a Mac, a live bar where ipywidgets is installed, which `pip install -e ".[labs]"` does). '
    "Rerunning the cell continues an interrupted run."
)


def time_of(lab: str) -> str:
    """The lab's compute time at full settings (labs/expected.json: the one source of the labs'
    times, quoted by labs/README.md and README.md too)."""
    return EXPECTED.get(lab, {}).get("time", "not measured yet")


def expected(lab: str) -> str:
    """The numbers this lab gave at full settings (labs/expected.json, written by a full run)."""
    e = EXPECTED.get(lab)
    if not e:
        return "_(not measured yet)_"
    return e["text"]


def lab1() -> list:
    return [
        new_markdown_cell(
            "# Lab 1: the corruptions, and what the base model does with them\n\n"
            "**Goal.** See the paper's three corruptions (blank image, random image, text removal) "
            "on real items, evaluate the untrained model under each, and find out which questions "
            "can be answered without looking at the image.\n\n"
            "**Time.** About 10 minutes of reading; compute "
            + time_of("lab1")
            + " on a 2-core laptop CPU (set `SMALL = True` in the first code cell for a smoke "
            "version).\n\n"
            "**Background.** The Hallucination-as-Cue framework (arXiv 2604.03179) asks whether RL "
            "post-training of a vision-language model uses the image. It corrupts the input so "
            "that the information a question needs is gone, and looks at what the model does: a "
            "model that still answers, and answers right, did not need what was removed.\n\n"
            "The benchmark here is `synth`: four small visual tasks (count shapes, read a digit, "
            "the tallest bar, the colour of a shape), each in four *modality versions* as in "
            "MathVerse: `text_dominant` and `text_lite` state the visual fact in the text too; "
            "`vision_dominant` and `vision_only` keep it in the image only. The model is "
            "`hallucue-tiny`, a 5 M-parameter Qwen2.5-VL that ships with the package."
        ),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## 1. Look at the corruptions\n\nOne row per item: the clean input, then each "
            "corruption. Read the question text in the last column: text removal cuts exactly the "
            "sentences that state the conditions, and nothing else."
        ),
        new_code_cell(
            'items = hq.load_benchmark("synth", "test", n=8 if SMALL else 300, seed=0)\n'
            'picture = hq.gallery(items[:4], OUT / "lab1-gallery.png")\n'
            "display(Image(filename=str(picture)))"
        ),
        new_code_cell(
            "# One item in detail: what each corruption changed (the record says what was removed).\n"
            'item = next(i for i in items if i.version == "text_dominant")\n'
            'print("clean question:\\n ", item.question)\n'
            'for cond in ("blank", "random", "text_removal"):\n'
            "    changed, record = hq.corrupt(item, cond, seed=0, donors=items)\n"
            '    print(f"\\n{cond}: {record}")\n'
            '    if cond == "text_removal":\n'
            '        print("question now:\\n ", changed.question)'
        ),
        new_markdown_cell(
            "## 2. Evaluate the base model under every condition\n\nGreedy decoding, the same "
            "items under each condition, so differences are paired. The interval is a Wilson 95% "
            "interval over items."
        ),
        new_code_cell(
            'res = hq.evaluate("hallucue-tiny", benchmark="synth", split="test",\n'
            '                  n=8 if SMALL else 300, out=OUT / "lab1-eval", quiet=True)\n'
            'rows = ["| condition | n | accuracy % | 95% CI | answered % |", "|---|---:|---:|---:|---:|"]\n'
            'hall = res.summary["diagnostics"]["hallucination"]\n'
            "for cond, s in res.by_condition.items():\n"
            '    lo, hi = s["ci95"]\n'
            '    answered = hall.get(cond, {}).get("rate")\n'
            '    ans = "—" if answered is None else f"{100 * answered:.0f}"\n'
            "    rows.append(f\"| {cond} | {s['n']} | {100 * s['accuracy']:.1f} | "
            '[{100 * lo:.1f}, {100 * hi:.1f}] | {ans} |")\n'
            'display(Markdown("\\n".join(rows)))'
        ),
        new_markdown_cell(
            "**Look at:** accuracy under `blank` against `none`, and the *answered* column. It "
            "counts only the items whose needed fact the corruption removed (vision items under a "
            "blank or random image): the information is gone, yet the model answers them."
        ),
        new_markdown_cell(
            "## 3. Which items can be answered without the image?\n\nSplit the clean-minus-blank "
            "accuracy difference (the *vision gain*) by modality version."
        ),
        new_code_cell(
            'by_version = res.summary["diagnostics"]["vision_gain_by_version"]\n'
            'rows = ["| version | n | clean % | blank % | vision gain (points) [95% CI] |",\n'
            '        "|---|---:|---:|---:|---:|"]\n'
            "for version, g in by_version.items():\n"
            "    if g is None:\n"
            "        continue\n"
            '    lo, hi = g["ci95"]\n'
            "    rows.append(f\"| {version} | {g['n']} | {100 * g['accuracy_a']:.1f} | \"\n"
            "                f\"{100 * g['accuracy_b']:.1f} | {100 * g['diff']:+.1f} \"\n"
            '                f"[{100 * lo:+.1f}, {100 * hi:+.1f}] |")\n'
            'display(Markdown("\\n".join(rows)))'
        ),
        new_markdown_cell(
            "## What to expect\n\n" + expected("lab1") + "\n\n"
            "## Questions to discuss\n\n"
            "1. On which versions is the vision gain near zero, and why? What does that say about "
            "benchmarks that mix such items into one accuracy?\n"
            "2. Under a blank image the model still answers nearly every question. Is that a "
            "hallucination, a guess, or a sensible use of the text? How would you tell them apart "
            "from the records (`res.records`)?\n"
            "3. Text removal lowers accuracy on which versions? Why is it the mirror image of the "
            "blank image? Look at the item printed in section 1: after text removal, could a "
            "model with perfect vision still answer it? What does that mean for reading the "
            "text-removal column as 'the model ignores the text'?\n"
            "4. A random image is a *wrong* image, not a missing one. Is the model better or worse "
            "off with a wrong image than with none?"
        ),
    ]


def lab2() -> list:
    return [
        new_markdown_cell(
            "# Lab 2: GRPO vs GRPO-BI: does training without images help, and where?\n\n"
            "**Goal.** Train the embedded model with LoRA GRPO twice, once on clean inputs "
            "(GRPO) and once with every training image blanked (GRPO-BI), evaluate both and the "
            "base model under every corruption, and read where each gained or lost.\n\n"
            "**Time.** Compute "
            + time_of("lab2")
            + " on a 2-core laptop CPU (two trainings of 20 steps and three evaluations of "
            "700 items x 4 conditions); start it, then read on while it runs. For a smoke version "
            "of a few minutes, set `SMALL = True` in the first code cell.\n\n"
            "**Background.** The paper's surprise: RL post-training with blank images (so the "
            "model must 'hallucinate' the visual facts) still improves reasoning scores, close to "
            "training with real images. If training never needed the image, what did it teach?"
        ),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## 1. Run the comparison\n\nThe embedded default recipe (the same one behind the "
            "README's table), restricted to two trainings. " + PROGRESS
        ),
        new_code_cell(
            "folder = hq.run(\n"
            '    overrides={"grid.train_conditions": ["none", "blank"]},\n'
            '    out=OUT / ("lab2-quick" if SMALL else "lab2"),\n'
            "    quick=SMALL,\n"
            ")\n"
            'print("run folder:", folder)'
        ),
        new_markdown_cell(
            "## 2. Table 1: clean test accuracy against the base\n\nEach trained row shows its "
            "change vs the base, paired on items, with a bootstrap 95% interval; **bold** when "
            "the interval excludes zero."
        ),
        new_code_cell('display(Markdown((folder / "tables" / "table1.md").read_text()))'),
        new_markdown_cell(
            "## 3. Every model under every condition\n\nRows: the model (by what it was trained "
            "under); columns: the condition it is evaluated under."
        ),
        new_code_cell(
            'display(Image(filename=str(folder / "figures" / "matrix.png")))\n'
            'display(Image(filename=str(folder / "figures" / "gains.png")))'
        ),
        new_markdown_cell(
            "## 4. Where did the change come from?\n\nThe modality diagnostics split each "
            "model's vision gain by version; the training curves show reward and held-out "
            "accuracy during training."
        ),
        new_code_cell(
            'display(Markdown((folder / "tables" / "diagnostics.md").read_text()))\n'
            'for name in ("versions-synth.png", "training_curves.png"):\n'
            '    if (folder / "figures" / name).is_file():\n'
            '        display(Image(filename=str(folder / "figures" / name)))'
        ),
        new_code_cell(
            "# The report's plain reading of the numbers (report.html is the same as one file)\n"
            'text = (folder / "report.md").read_text()\n'
            'start = text.find("## Reading")\n'
            'display(Markdown(text[start : text.find("\\n## ", start + 5)]))'
        ),
        new_markdown_cell(
            "## What to expect\n\n" + expected("lab2") + "\n\n"
            "## Questions to discuss\n\n"
            "1. GRPO-BI never saw a real image during training. On which versions did it gain, "
            "and does that fit 'it learned the answer format and text reasoning'?\n"
            "2. Compare the vision gain of GRPO and GRPO-BI: did training with blank images make "
            "the model rely *less* on the image?\n"
            "3. The intervals are over items, with one training seed. What would a second seed "
            "add, and which claims here would you not make without it?\n"
            "4. The training reward of GRPO-BI rises too. Where can reward come from when the "
            "image is blank?"
        ),
    ]


def lab3() -> list:
    return [
        new_markdown_cell(
            "# Lab 3: the ratio sweep: how much corruption does it take?\n\n"
            "**Goal.** The paper trains at 0% or 100% corruption. Here GRPO-BI (blank images) and "
            "GRPO-TR (text removal) are trained with 25%, 50% and 100% of the training items "
            "corrupted, and accuracy and vision gain are plotted against the ratio.\n\n"
            "**Time.** Compute "
            + time_of("lab3")
            + " on a 2-core laptop CPU shared with other runs (7 trainings of 20 steps, 8 models evaluated on 300 "
            "items under 3 conditions): start it, then read on. For a smoke version of a few "
            "minutes, set `SMALL = True` in the first code cell.\n\n"
            "**Background.** Clean GRPO is the 0% end of both lines, and the base model is where "
            "training starts. Neither depends on the ratio, so each is trained (or evaluated) once "
            "and shared by every ratio's folder; the figure draws clean GRPO as the point at ratio "
            "0 that every line starts from, and the base model as a grey band."
        ),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## 1. Run the sweep\n\nThe shipped config `ratio-sweep` sets `grid.ratios: [0.25, "
            "0.5, 1.0]`; the same from a shell: `hallucue-mlx run --config ratio-sweep`. A sweep "
            "over any other key: `hallucue-mlx sweep train.beta=0,0.01,0.1`. " + PROGRESS
        ),
        new_code_cell(
            'cfg = hq.load_config("ratio-sweep")\n'
            'print("ratios:", cfg.grid.ratios, "| trained under:", cfg.grid.train_conditions)\n'
            'folder = hq.run(cfg, OUT / ("lab3-quick" if SMALL else "lab3"), quick=SMALL)\n'
            'print("sweep folder:", folder)'
        ),
        new_markdown_cell(
            "## 2. The dose-response figure\n\nLeft: clean test accuracy; middle: the change vs "
            "the base model, paired on items; right: vision gain (clean minus blank-image "
            "accuracy, paired). Bands are 95% intervals over items; every point is one training "
            "seed. Clean GRPO is the point at ratio 0, where both lines start; the grey dashed "
            "line and band are the base model. Lines that coincide are nudged sideways so that "
            "both stay visible."
        ),
        new_code_cell('display(Image(filename=str(folder / "figures" / "dose_response.png")))'),
        new_code_cell('display(Markdown((folder / "tables" / "dose_response.md").read_text()))'),
        new_markdown_cell(
            "## 3. One ratio in detail\n\nEvery ratio has an ordinary run folder with its own "
            "report; here the 100% one, the paper's setting."
        ),
        new_code_cell(
            'one = sorted(p for p in folder.iterdir() if p.name.startswith("grid.ratio="))[-1]\n'
            "print(one.name)\n"
            'display(Markdown((one / "tables" / "table1.md").read_text()))'
        ),
        new_markdown_cell(
            "## What to expect\n\n" + expected("lab3") + "\n\n"
            "## Questions to discuss\n\n"
            "1. Is there a ratio below which corrupted training is indistinguishable from clean "
            "GRPO? Can this experiment tell, given its intervals?\n"
            "2. Which would you expect to hurt more as the ratio grows, blank images or text "
            "removal, on this benchmark, where half the items state the visual fact in the text?\n"
            "3. The figure has one seed per point. Sketch the experiment that would make a "
            "dose-response claim you would put in a paper (seeds, items, steps), and estimate its "
            "cost from this run's time.\n"
            "4. Try a one-factor sweep of your own: `hallucue-mlx sweep train.beta=0,0.01,0.1 "
            "--quick`, then without `--quick` on a subset (`--set data.eval.0.n=200`)."
        ),
    ]


# Labs that need hardware this project's machines do not have: written, never executed here (not
# by CI either: tests/test_labs.py skips notebooks marked so in their metadata).
NOT_RUN_HERE = {"lab4_real_model_on_a_mac.ipynb"}

LAB4_SETS = [
    "data.train={name: synth, split: train, n: 400}",
    "data.eval=[{name: synth, split: test, n: 200}]",
    "data.train_slice_n=50",
    "grid.train_conditions=[none, blank]",
    "grid.eval_conditions=[none, blank]",
    "train.steps=60",
    "train.eval_every=0",
    "train.max_completion_length=256",
    "eval.max_tokens=256",
]


def lab4() -> list:
    sets = "".join(f"    {s!r},\n" for s in LAB4_SETS)
    return [
        new_markdown_cell(
            "# Lab 4: a real model on a Mac: plan first, then a scaled-down comparison\n\n"
            "**Goal.** Train and compare a real vision-language model, Qwen2-VL-2B-Instruct in 4 "
            "bits, on an Apple Silicon Mac: ask `plan` whether a run fits and how long it takes "
            "*before* starting it, then run a scaled-down GRPO vs GRPO-BI comparison and read it "
            "like the paper's Table 1.\n\n"
            "**Not run here.** This lab needs an Apple Silicon Mac with at least 8 GB (16 GB is "
            "comfortable) and a one-time download of the model (about 1.3 GB, "
            "`mlx-community/Qwen2-VL-2B-Instruct-4bit`). The project's own machines are Linux "
            "CPUs without Metal, where 4-bit matmuls crawl (about 2 GFLOPS), so these cells have "
            "never been executed by us and CI does not execute them. Every number below is "
            "`plan`'s prediction, not a measurement.\n\n"
            "**Expected cost (predicted by `plan`).** The scaled-down comparison (2 trainings of "
            "60 steps, 2 prompts x 5 completions of up to 256 tokens; 3 models x 250 synth items x "
            "2 conditions): about 1 h 40 min on an M4 or M5 with 16 GB (5.7 GB peak), 55 min on "
            "an M4 Pro, 2 h on an 8 GB M2 (4.6 GB peak, tight). The full preset "
            "(`qwen2vl-2b-4bit.yaml`: 4 trainings x 400 steps on Geometry3K, 5 models x 900 "
            "items x 4 conditions) is predicted at 75-105 h: days, not a class."
        ),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## 1. Plan first\n\n`plan` reads the model's config.json (its published one when "
            "offline), the run config and a few seconds of measurements of this machine, and "
            "predicts the GRPO step's and the evaluation's peak memory by part, the loss "
            "micro-batch it chooses for this machine "
            "(`train.micro_batch_size_per_device_for_update: 0`), and the time of a step, of "
            "an evaluation item and of the whole run. The same from a shell: `hallucue-mlx plan "
            "--config qwen2vl-2b-4bit --set ...`."
        ),
        new_code_cell(
            "from hallucue_mlx.plan import make_plan, render, this_machine\n\n"
            f"SETS = [\n{sets}]\n"
            'cfg = hq.load_config("qwen2vl-2b-4bit", SETS)\n'
            "plan = make_plan(cfg, here=this_machine())\n"
            "render(plan)\n"
            'assert plan.fits, "does not fit: apply one of the --set changes printed above"'
        ),
        new_markdown_cell(
            "Read the table before going on: which phase sets the peak (rollout, reference, "
            "loss)? How much do the float32 logits over the 151,936-token vocabulary take now that "
            "the loss computes them in chunks of positions? Try `--memory 8` and `--chip M4 "
            "Max` in the shell and compare the micro-batch it picks.\n\n"
            "## 2. The scaled-down comparison\n\nGRPO (clean images) against GRPO-BI (blank "
            "images), 60 steps each on synth, both evaluated with the base model on 200 test "
            "items clean and blank. Rerunning the cell continues an interrupted run."
        ),
        new_code_cell(
            'folder = hq.run(cfg, OUT / "lab4")\n'
            'display(Markdown((folder / "tables" / "table1.md").read_text()))'
        ),
        new_markdown_cell("## 3. Where the models differ"),
        new_code_cell(
            'for png in sorted((folder / "figures").glob("*.png"))[:2]:\n'
            "    display(Image(filename=str(png)))"
        ),
        new_markdown_cell(
            "## What to expect\n\n_(not measured: nobody has run this lab on a Mac yet; if you "
            "do, the peak memory and step times in `train/*/metrics.jsonl` against `plan`'s "
            "prediction are worth reporting.)_\n\n"
            "## Questions to discuss\n\n"
            "1. How close was `plan`? Compare its step peak with `peak_memory_gb` and its step "
            "time with `step_time` in the trainings' metrics.jsonl.\n"
            "2. 60 steps of 10 completions is 600 samples. Is that enough for a difference "
            "between GRPO and GRPO-BI to show on 200 items? What do the intervals say?\n"
            "3. The tiny model of labs 1-3 learned its vision path late. Does a pretrained "
            "2B model answer the vision-only items under blank images at chance, or above?\n"
            "4. Scale it up: which keys would you change for the paper's setting, and what does "
            "`plan` say it would cost on your Mac?"
        ),
    ]


LABS = {
    "lab1_corruptions.ipynb": lab1,
    "lab2_grpo_vs_grpo_bi.ipynb": lab2,
    "lab3_ratio_sweep.ipynb": lab3,
    "lab4_real_model_on_a_mac.ipynb": lab4,
}


def main() -> None:
    for name, cells in LABS.items():
        nb = new_notebook(cells=cells())
        for i, cell in enumerate(nb.cells):  # stable ids: a rebuild changes only what changed
            cell.id = f"{name.split('_')[0]}-{i:02d}"
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        if name in NOT_RUN_HERE:
            nb.metadata["hallucue"] = {"not_run_here": True}
        nbformat.validate(nb)
        (HERE / name).write_text(nbformat.writes(nb) + "\n")
        print("wrote", HERE / name)
    # the cells in the project's code style (ruff format, as CI checks)
    paths = [str(HERE / name) for name in LABS]
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", *paths], check=True)


if __name__ == "__main__":
    main()
