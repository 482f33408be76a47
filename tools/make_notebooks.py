"""Regenerate the thin experiment notebooks in notebooks/ (clean: no outputs, a 'parameters' cell).

The notebooks are the source of truth once written; this script keeps their shared shape in one
place. Run: python tools/make_notebooks.py
"""
from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]

PARAMS = '''profile = "quick"   # "smoke": seconds; "quick": minutes; "full": what the book reports; "thesis": the thesis' budgets
meta_seeds = None   # meta-training seeds, one LSTM each (a list); None: the profile's
seeds = None        # seeds drawing the held-out test tasks (a list); None: the profile's
init = "thesis"     # MLP optimizee initialisation: "thesis" (weights N(0, 0.001^2), zero biases) or "pytorch"
n_tasks = None      # held-out test tasks per seed; None: the profile's
steps = None        # optimizee steps per evaluation run; None: the profile's (200)
meta_epochs = None  # meta-training epochs; None: the profile's
meta_lr = None      # None: the task family's default (0.003 quadratics, 0.01 MNIST, as in the thesis code)
data_root = None    # None: $L2L_DATA_DIR, else ../shared/data, else ./data
device = "cpu"      # "cpu" or "cuda"
results_dir = None  # None: results/<profile>/<this notebook>'''

SETUP = '''from IPython.display import display
from l2l_core import experiments as ex

s = ex.settings({name!r}, {kind!r}, profile, meta_seeds=meta_seeds, seeds=seeds, n_tasks=n_tasks, steps=steps,
                meta_epochs=meta_epochs, meta_lr=meta_lr, init=init, data_root=data_root, device=device,
                results_dir=results_dir)
ex.profile_note(s)'''

RUN = '''result = ex.{runner}(s)
ex.glue_result(result)
fig = result.figure()'''

TABLE = '''result.summary_text()'''

TRAINING_CURVES = '''fig_training = result.training_figure()'''

SEED_STRIP = '''fig_seeds = result.seeds_figure()'''

CLAIMS = '''## Claim check

The thesis' claim, where its wording comes from, the thesis' own numbers, and what this run shows: mean [95% CI]
over meta-training seeds and held-out tasks (seeds and tasks are crossed: every LSTM runs on the same tasks); the
paired difference is LSTM minus the best baseline on the same tasks. The verdict (holds / does not hold /
inconclusive) and the rule are on the method page; *seeds* says for how many meta-training seeds, each alone, the
claim holds. The conclusions page adjusts the verdicts for the number of claims (Holm).

```{{glue}} {name}.claims
```
'''

NOTEBOOKS = {
    "01_quadratic": dict(kind="quadratic", runner="run_quadratic", title="Experiment 1: quadratic functions", intro="""
Meta-train the LSTM optimizer on random 10-dimensional quadratics $f(\\theta) = \\lVert W\\theta - y\\rVert^2$
($W$, $y$ drawn from a standard normal, $\\theta_0 = 0$; raw gradients, output scale 1.0) and compare it on unseen
quadratics with SGD, RMSprop, Adam and NAG, each with its learning rate tuned on validation quadratics."""),
    "02_mnist": dict(kind="mlp", runner="run_mnist", title="Experiment 2: an MLP on MNIST", intro="""
Meta-train the LSTM optimizer (gradient preprocessing, output scale 0.1) on a 784-20-10 sigmoid MLP with
minibatches of 128 MNIST training images, then run it, and the four tuned baselines, on the same network
trained on MNIST *test* images, for 200 steps: twice the horizon it was trained for. The optimizee starts as the
thesis code starts it (every weight drawn N(0, 0.001^2), biases zero); the same experiment with PyTorch's default
initialisation (each with its own meta-trained LSTMs and tuned baselines) runs beside it, so the effect of that
choice on the verdict is on the page.""", long_run=True),
    "03_architectures": dict(kind="mlp", runner="run_architectures", title="Experiment 3: other architectures", intro="""
The optimizer meta-trained in experiment 2 (on one hidden layer of 20 sigmoid units) is run unchanged on an MLP
with 40 hidden units and on one with two hidden layers of 20 units. The baselines are tuned on these very
architectures. The LSTM comes from `02_mnist`'s results folder; it is trained here if missing."""),
    "04_relu": dict(kind="mlp", runner="run_relu", title="Experiment 4: ReLU activations", intro="""
The same MNIST-trained optimizer on the 784-20-10 MLP with ReLU instead of sigmoid activations, against baselines
tuned on the ReLU network. The thesis reports that the LSTM fails here."""),
    "05_mnist_like": dict(kind="mlp", runner="run_mnist_like", sources=True,
                          title="Experiment 5: transfer to Fashion-MNIST and EMNIST Letters", intro="""
The MNIST-trained optimizer, unchanged, on 784-20-C sigmoid MLPs trained on Fashion-MNIST (10 classes) and on
EMNIST Letters (26 classes), against baselines tuned on each data set. These are "related" data: 28x28 grey images.
The offline EMNIST copy is a subset whose test file lacks the letters t-z; held-out data covering all 26 classes
is built as the data note below says."""),
    "06_cifar_svhn": dict(kind="mlp", runner="run_cifar_svhn", sources=True,
                          title="Experiment 6: transfer to CIFAR-10 and SVHN", intro="""
The MNIST-trained optimizer on unrelated data: 3072-20-10 sigmoid MLPs on 32x32 colour images of CIFAR-10 and
SVHN, against baselines tuned on each. Exact CIFAR-10 pixels are used (the offline copy is an exact 4,000/1,000
subset; the lossy JPEG copy is not used). If SVHN's files are absent the SVHN part is not run, and the data note
and the claim table say so: no other data set stands in for it."""),
}


def code(src, tags=None):
    cell = nbf.v4.new_code_cell(src)
    if tags:
        cell.metadata["tags"] = tags
    return cell


LONG_RUN = '''fig_long = ex.long_run_figure(s)'''


def experiment_notebook(name, kind, runner, title, intro, sources=False, long_run=False):
    nb = nbf.v4.new_notebook()
    nb.cells = [
        nbf.v4.new_markdown_cell(f"# {title}\n{intro}\n\nParameters (papermill-injectable; `None` means the profile's value):"),
        code(PARAMS, ["parameters"]),
        code(SETUP.format(name=name, kind=kind)),
        nbf.v4.new_markdown_cell("## Loss on held-out tasks\n\nMean over seeds and tasks with a 95% band; log scale; "
                                 "the LSTM solid, baselines dashed. Baseline learning rates are in the table below."),
        code(RUN.format(runner=runner)),
        *([code("ex.data_sources(result)"),
           nbf.v4.new_markdown_cell("The splits each setting used, computed from the data read above (the tuning "
                                    "split is small where the offline copy is a subset):"),
           code("ex.split_facts(result)")] if sources else []),
        nbf.v4.new_markdown_cell("Loss at steps 100 and 200, loss summed over steps 0-99 (the thesis' metric) and, for "
                                 "classifiers, held-out accuracy at the end; mean [95% CI]."),
        code(TABLE),
        nbf.v4.new_markdown_cell("## Meta-training\n\nValidation summed loss (steps 0-99, mean over the validation "
                                 "tasks) against trajectories seen, one line per meta-training seed; the dot marks the "
                                 "LSTM that was selected (best on validation); a dotted line ending in a cross is an "
                                 "LSTM abandoned as stuck after its first epoch and replaced by a fresh one (method "
                                 "page, 'Stuck seeds and restarts'). Transfer chapters show the curves of "
                                 "experiment 2's LSTMs, which they reuse."),
        code(TRAINING_CURVES),
        nbf.v4.new_markdown_cell("Each meta-training seed's LSTM (a point: its mean over the held-out tasks) beside the "
                                 "tuned baselines (a bar each): how much of the spread comes from meta-training."),
        code(SEED_STRIP),
        *([nbf.v4.new_markdown_cell("### At the thesis' budget\n\nOne LSTM (seed 0) meta-trained once for the thesis' "
                                    "2,000 trajectories (validated every 50 on 50 tasks), kept small in "
                                    "`book/data/long_run/` with its provenance; the dashed line is this profile's "
                                    "budget. This is the measurement behind the budget choice on the method page."),
           code(LONG_RUN)] if long_run else []),
        nbf.v4.new_markdown_cell(CLAIMS.format(name=name)),
    ]
    return nb


CONCLUSIONS = [
    nbf.v4.new_markdown_cell("# Conclusions\n\nEvery claim check of the experiment chapters, collected from their "
                             "results files. Verdicts are computed from paired 95% confidence intervals (see each "
                             "chapter); nothing on this page is typed by hand."),
    code('''profile = "quick"    # whose results to collect: results/<profile>/
results_root = None  # None: results/<profile>; make reproduce passes build/<profile>/results''', ["parameters"]),
    code('''from l2l_core import report
from l2l_core.experiments import REPO_ROOT

claims = report.collect_claims(results_root or REPO_ROOT / "results" / profile)
claims = report.glue_conclusions(claims)  # Holm across the table'''),
    nbf.v4.new_markdown_cell('''Of the {glue:text}`conclusions.n` claims checked (profile {glue:text}`conclusions.profiles`),
{glue:text}`conclusions.holds` hold, {glue:text}`conclusions.does_not_hold` do not hold and
{glue:text}`conclusions.inconclusive` are inconclusive, at 95% confidence after Holm's correction across the
{glue:text}`conclusions.tested` claims that could be tested (see the method page for the rules, the margins and
why the intervals cover meta-training seeds as well as tasks).

```{glue} conclusions.table
```

How to read the table: *thesis* is what the thesis reported and *source* where its wording comes from; *test* is
the rule applied; *ours* is the LSTM's mean [95% CI over meta-training seeds and tasks], the best tuned baseline's,
and their paired difference on the same tasks (LSTM minus baseline; negative means the LSTM is better for
losses); *seeds* says for how many meta-training seeds, each alone, the claim holds. The last column is the book's
verdict: Holm-adjusted across the whole table. The thesis' conclusions are treated as hypotheses: where a verdict is *does not hold*, our runs
contradict the thesis under the settings listed in that chapter.'''),
]

REPRODUCTION = [
    nbf.v4.new_markdown_cell('''# Reproducing this book

On a fresh machine with Python 3.11:

```bash
make reproduce          # creates .venv, installs requirements.txt, runs every notebook (full profile), builds the book
make test               # creates .venv if needed, runs the unit tests and every notebook in the smoke profile
```

`make reproduce` executes the notebooks with papermill into `build/full/executed/` and builds the HTML in
`build/full/site/_build/html`. Interrupted runs resume: a notebook whose inputs (its source, parameters, the
`l2l_core` sources, requirements, data listing and upstream results) did not change is skipped.
`make reproduce PROFILE=quick` gives a first answer in less time; `make book` rebuilds the HTML alone.
Data are read from `$L2L_DATA_DIR`, else `../shared/data`, else `./data`.'''),
    code('''build_dir = None  # None: build/<profile>
profile = "full"  # the profile whose run built this book''', ["parameters"]),
    code('''from IPython.display import Markdown, display
from l2l_core import report
from l2l_core.experiments import REPO_ROOT, PROFILES

assert profile in PROFILES, f"profile={profile!r} is not one of {PROFILES}"
build_dir = build_dir or REPO_ROOT / "build" / profile
Markdown(f"**This book was built from the `{profile}` profile.**"
         + ("" if profile == "full" else " Its numbers are not the book's evidence: run `make reproduce`."))'''),
    nbf.v4.new_markdown_cell("## Wall time of each notebook\n\nAs measured by the run that built this book "
                             "(skipped notebooks show the time of the run that produced them)."),
    code("report.timings_table(build_dir)"),
    nbf.v4.new_markdown_cell("## Machine and versions"),
    code("report.machine_info()"),
    nbf.v4.new_markdown_cell('''## Do the verdicts survive a change of float rounding?

Meta-training is chaotic: a rounding change of $10^{-7}$ trains different LSTMs from the same seeds. The book's
verdicts rest on several seeds so that they should not depend on that. This was checked with two full runs of the
same commit that differ only in float rounding (stored in `book/data/rounding_check/` by
`tools/compare_runs.py --save`); every verdict of both runs, side by side:'''),
    code('''check = report.rounding_check()
if check is None:
    display(Markdown("No rounding check is stored."))
else:
    table, info = check
    display(Markdown(f"**{info['note']}** {info['verdicts']} verdicts compared; they differ on {info['differ']}."))
    display(table.style.hide(axis="index"))'''),
    nbf.v4.new_markdown_cell("## Benchmarks\n\nThe latest `make bench` (`bench/results.json`): one MNIST "
                             "meta-training trajectory (100 steps, unroll 20, 784-20-10 sigmoid) for a plain "
                             "reference implementation and for `l2l_core`, and evaluation workloads."),
    code('''bench = report.bench_table()
print("peak RSS (MB):", bench.attrs.get("peak_rss_mb"), "| machine:", bench.attrs.get("machine"))
bench'''),
    nbf.v4.new_markdown_cell('''## Jobs, and what more cores would buy

`make reproduce` runs each LSTM's meta-training and each evaluation as a job on a Dask cluster (README, "Jobs on a
cluster"). `make bench` times the full profile's MNIST meta-training (two seeds, cut short) as jobs on 1 worker
with 2 torch threads and on 2 workers with 1 thread each, and measures the cost of one unit of each kind of job.
From those costs and the jobs each profile submits (`l2l_core.scaling`), the expected wall time on 2, 16 and 64
cores: with notebooks run in order as `make reproduce` runs them, with jobs free to run across notebooks, and the
floor that no number of cores beats (one LSTM's meta-training is one job: it does not split). These numbers hold
for the machine named below only.'''),
    code('''scaling = report.scaling_table()
jobs_run = scaling.attrs.get("jobs")
if jobs_run:
    display(Markdown(f"Machine: {scaling.attrs['machine']['cpu']} ({scaling.attrs['machine']['cores']} cores, "
                     f"{scaling.attrs['machine']['instruction_sets']}). {jobs_run['workload']}: "
                     f"1 worker x 2 threads {jobs_run['1x2_s']:.0f} s, 2 workers x 1 thread {jobs_run['2x1_s']:.0f} s "
                     f"(ratio {jobs_run['ratio_1x2_over_2x1']:.2f})."))
scaling'''),
]


DROP_IN = [
    nbf.v4.new_markdown_cell('''# Using the learned optimizer on your own model

The package ships the LSTM optimizers meta-trained in chapter 2 (one per meta-training seed, a few dozen KB
each), so using one needs no build:

```python
from l2l_core.torch_optimizer import LearnedOptimizer
opt = LearnedOptimizer(model.parameters(), pretrained="mnist")   # or meta_seed=k, or checkpoint="<path>.pt"
for x, y in batches:
    loss = loss_fn(model(x), y)
    loss.backward(); opt.step(); opt.zero_grad()
```

Each parameter tensor keeps its own LSTM state; `state_dict()` / `load_state_dict()` carry those states and the
LSTM's weights; it runs wherever the parameters live (CPU or CUDA). `l2l_core.pretrained.provenance("mnist")`
says how the shipped LSTMs were trained (settings, code commit, selection scores, the book's numbers).'''),
    code('''profile = "quick"      # whose book results to quote (Adam's tuned rate, the verdicts): results/<profile>
results_root = None    # None: results/<profile>; make reproduce passes build/<profile>/results
pretrained = "mnist"   # a shipped optimizer (l2l_core.pretrained.available())
meta_seed = None       # which of its meta-training seeds; None: the one selected on validation
checkpoint = None      # path of a saved LSTM to use instead of the shipped one
seeds = None           # model seeds; None: three (one for smoke)
steps = None           # None: 200 (20 for smoke)
data_root = None       # None: $L2L_DATA_DIR, else ../shared/data, else ./data''', ["parameters"]),
    code('''import torch
from l2l_core import demo
from l2l_core.experiments import REPO_ROOT
from l2l_core.plotting import plot_losses

results_root = results_root or REPO_ROOT / "results" / profile
demo.provenance_table(pretrained)'''),
    nbf.v4.new_markdown_cell('''Above: what was shipped, each seed's validation score (on which the default was chosen) and
its held-out summed loss on MNIST beside the tuned baselines'. Below, an ordinary `nn.Sequential` (784-20-10
sigmoid, torch's default initialisation) is trained with it and with Adam at the rate chapter 2 tuned for that
model, on the same minibatches, in a plain PyTorch loop.'''),
    code('''adam_lr = demo.tuned_rate(results_root, "Adam")
lstm = demo.learned(checkpoint) if checkpoint else demo.learned_pretrained(pretrained, meta_seed)
seeds = seeds or ((0,) if profile == "smoke" else (0, 1, 2))
steps = steps or (20 if profile == "smoke" else 200)
frame = demo.train_side_by_side({"LSTM": lstm, "Adam": lambda p: torch.optim.Adam(p, lr=adam_lr)},
                                seeds=seeds, steps=steps, data_root=data_root)
fig = plot_losses(frame, title=f"nn.Sequential on MNIST: LearnedOptimizer vs Adam (lr {adam_lr:g})")'''),
    code('''frame[frame.step == frame.step.max()].groupby("optimizer").loss.describe()[["count", "mean", "std"]]'''),
    nbf.v4.new_markdown_cell('''## Where it is known to fail

The shipped LSTMs learned to optimize one small sigmoid MLP on MNIST for 100 steps. The book's own verdicts on them
away from that family (chapters 3 to 6; verdicts of each claim alone, before the correction for many claims on
the [conclusions page](90_conclusions.ipynb)) say where to expect them to work and where not. Past the 100 steps it
was trained for, see [long horizons](09_long_horizons.ipynb).'''),
    code('''demo.known_limits(results_root)'''),
]


ERRATA = [
    nbf.v4.new_markdown_cell('''# Errata: the thesis code's defects, switched on and off

The thesis' public code (a notebook derived from a popular PyTorch port) had four defects that bear on its
conclusions. Each is reproduced here as an explicit option of `l2l_core`, **off by default** everywhere else in
this book, and the affected experiments are re-run with the defect on and off:

| | defect | library option | affects |
|---|---|---|---|
| (a) | the learning-rate search passed a stale variable: every baseline was tuned as plain SGD (NAG as SGD with Nesterov momentum), and Adam and RMSprop then ran at SGD's rate | `tune_all(..., tuned_as_sgd_bug=True)` | experiments 3, 4, 6 |
| (b) | the LSTM meta-trained directly on EMNIST Letters had no gradient preprocessing and no output scale | `LSTMConfig(preprocess=False, output_scale=1.0)` | the EMNIST-trained LSTM of experiment 5 |
| (c) | the loss was taken before each update and the meta-update fired when `t % 20 == 0`, detaching the update just made: updates 0, 20, 40, 60 and 80-99 were never meta-trained | `meta_train(..., meta_update_schedule_bug=True)` | every LSTM (here: experiment 2) |
| (d) | the hidden-state offset was never advanced: every parameter tensor read and wrote the LSTM state of coordinates 0..size-1, overwriting the others' | `LSTMConfig(shared_state_offset_bug=True)` | every LSTM on an MLP (here: experiment 2) |

"Fixed" results are the experiment chapters' own (same tasks, same seeds); "with defect" changes only the defective
part (for (a) the baselines, for (b)-(d) the LSTM). Parameters (`None`: the profile's value, the same as the chapters'):'''),
    code(PARAMS, ["parameters"]),
    code(SETUP.format(name="08_errata", kind="mlp").replace("from l2l_core import experiments as ex",
                                                         "from l2l_core import errata, experiments as ex")),
    code('''result = errata.run_errata(s)
errata.glue_errata(result)'''),
    nbf.v4.new_markdown_cell('''## Which conclusions survive the fixes

{glue:text}`errata.n` claim checks were re-run; the defect changes the verdict of {glue:text}`errata.changed` of them.
After the fixes, {glue:text}`errata.survives_yes` of the thesis' conclusions hold, {glue:text}`errata.survives_no`
do not and {glue:text}`errata.survives_uncertain` are inconclusive at 95% confidence (verdicts as in the chapters:
paired 95% confidence intervals over seeds x tasks).

```{glue} errata.table
```
'''),
    nbf.v4.new_markdown_cell("## (a) Baselines tuned as SGD\n\nWith the defect Adam and RMSprop run at SGD's rate; "
                             "the fixed runs are the chapters' own, every baseline tuned as itself."),
    code('''fig = result.figure("a")'''),
    nbf.v4.new_markdown_cell("## (b) The EMNIST-trained LSTM\n\n{glue:text}`errata.note.b`"),
    code('''fig = result.figure("b")'''),
    nbf.v4.new_markdown_cell("## (c) The thesis loop's meta-update schedule\n\n{glue:text}`errata.note.c`"),
    code('''fig = result.figure("c")'''),
    nbf.v4.new_markdown_cell("## (d) LSTM state shared across parameter tensors\n\n{glue:text}`errata.note.d`"),
    code('''fig = result.figure("d")'''),
    nbf.v4.new_markdown_cell("## The numbers behind each verdict\n\nLSTM and best baseline, mean [95% CI], and their "
                             "paired difference, with the defect and fixed.\n\n```{glue} errata.details\n```"),
]

HORIZONS = [
    nbf.v4.new_markdown_cell('''# Longer horizons and wall-clock time

The LSTM of experiment 2 was meta-trained on trajectories of 100 steps. Here it runs ten times as long on MNIST and
on the transfer data sets, next to the four baselines (tuned as in the chapters, on 100-step runs). Each optimizer's
cost per step (loss, gradient and update of one network, as a user trains one) is measured in this same run, so
the losses are also drawn against wall-clock seconds. Parameters (`None`: the profile's value):'''),
    code(PARAMS, ["parameters"]),
    code(SETUP.format(name="09_long_horizons", kind="mlp_long").replace(
        "from l2l_core import experiments as ex", "from l2l_core import experiments as ex, horizons")),
    code('''result = horizons.run_long_horizons(s)
horizons.glue_horizons(result)
by_step, by_time = result.figures()'''),
    nbf.v4.new_markdown_cell("## Cost per step\n\nMedian seconds per optimizee step on one task (this machine, this run), "
                             "and relative to SGD."),
    code('''result.costs.round(6)'''),
    nbf.v4.new_markdown_cell('''## Where the LSTM's advantage holds and where it breaks

{glue:text}`horizons.runs` runs per optimizer, {glue:text}`horizons.steps` steps. Each window compares the mean loss
over its steps; the wall-clock rows give every optimizer the LSTM's time for 100 (or all) steps and score the mean
loss of its last 10 steps. Differences are paired (LSTM minus the best baseline of that row; negative: LSTM better).

```{glue} horizons.table
```'''),
    code('''horizons.notes_markdown(result)'''),
]


def write(nb, name):
    """Write with stable cell ids, so regenerating an unchanged notebook changes nothing."""
    for i, cell in enumerate(nb.cells):
        cell.id = f"{name.replace('_', '-')}-{i}"
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbf.write(nb, ROOT / "notebooks" / f"{name}.ipynb")


def main():
    extra = {"07_drop_in": DROP_IN, "08_errata": ERRATA, "09_long_horizons": HORIZONS, "90_conclusions": CONCLUSIONS,
             "99_reproduction": REPRODUCTION}
    for name, cells in extra.items():
        nb = nbf.v4.new_notebook()
        nb.cells = cells
        write(nb, name)
    for name, spec in NOTEBOOKS.items():
        write(experiment_notebook(name, **spec), name)


if __name__ == "__main__":
    main()
