"""The thesis experiments as library calls, so each notebook is parameters + one call + a figure + a table.

Each ``run_*`` function trains (or reuses) the LSTM, tunes every baseline as itself on meta-validation
tasks, evaluates all five optimizers on the same held-out test tasks over several seeds, checks the
thesis' claims, and writes every result atomically into ``results_dir``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .baselines import tune_all
from .checkpoint import load_optimizer, save_optimizer
from .checks import check_choice, check_int, check_positive_float, check_seed
from .claims import Claim, check_claims
from .data import DatasetNotFoundError, dataset_shape
from .evaluate import compare, summarize
from .io import write_frame, write_json
from .lstm_optimizer import LSTMOptimizer
from .meta_train import meta_train
from .plotting import plot_losses
from .tasks import MLPFamily, QuadraticFamily

REPO_ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
PROFILES = ("smoke", "quick", "full")
DEVICES = ("cpu", "cuda")

# Meta-training budget per task kind and profile. smoke checks the pipeline in seconds (its numbers
# mean nothing); quick gives a first real answer in minutes; full is what the book reports.
TRAINING = {
    "quadratic": {
        "smoke": dict(meta_epochs=2, trajectories_per_epoch=4, tasks_per_trajectory=4, train_steps=20, unroll=10, n_val_tasks=4),
        "quick": dict(meta_epochs=15, trajectories_per_epoch=20, tasks_per_trajectory=8, train_steps=100, unroll=20, n_val_tasks=20),
        "full": dict(meta_epochs=50, trajectories_per_epoch=20, tasks_per_trajectory=8, train_steps=100, unroll=20, n_val_tasks=50),
    },
    "mlp": {
        "smoke": dict(meta_epochs=1, trajectories_per_epoch=2, tasks_per_trajectory=1, train_steps=20, unroll=10, n_val_tasks=2),
        "quick": dict(meta_epochs=3, trajectories_per_epoch=20, tasks_per_trajectory=1, train_steps=100, unroll=20, n_val_tasks=5),
        "full": dict(meta_epochs=10, trajectories_per_epoch=20, tasks_per_trajectory=1, train_steps=100, unroll=20, n_val_tasks=10),
    },
}
TRAINING["mlp_long"] = TRAINING["mlp"]  # the long-horizon chapter reuses experiment 2's LSTM
# Evaluation budget: seeds x n_tasks held-out test tasks, run for `steps`; baselines tuned on tune_tasks.
EVALUATION = {
    "quadratic": {
        "smoke": dict(seeds=(0,), n_tasks=4, steps=20, tune_tasks=4, tune_steps=20),
        "quick": dict(seeds=(0, 1), n_tasks=50, steps=200, tune_tasks=20, tune_steps=100),
        "full": dict(seeds=(0, 1, 2, 3, 4), n_tasks=100, steps=200, tune_tasks=50, tune_steps=100),
    },
    "mlp": {
        "smoke": dict(seeds=(0,), n_tasks=2, steps=20, tune_tasks=2, tune_steps=20),
        "quick": dict(seeds=(0, 1), n_tasks=10, steps=200, tune_tasks=10, tune_steps=100),
        "full": dict(seeds=(0, 1, 2, 3, 4), n_tasks=20, steps=200, tune_tasks=20, tune_steps=100),
    },
    # ten times the training horizon; fewer runs, since each is five times longer (baselines tuned as in the chapters)
    "mlp_long": {
        "smoke": dict(seeds=(0,), n_tasks=2, steps=30, tune_tasks=2, tune_steps=20),
        "quick": dict(seeds=(0, 1), n_tasks=3, steps=1000, tune_tasks=10, tune_steps=100),
        "full": dict(seeds=(0, 1, 2), n_tasks=5, steps=1000, tune_tasks=20, tune_steps=100),
    },
}


@dataclass(frozen=True)
class Settings:
    """Everything an experiment run depends on (recorded next to its results)."""

    name: str
    kind: str
    profile: str
    seeds: tuple[int, ...]
    n_tasks: int
    steps: int
    tune_tasks: int
    tune_steps: int
    meta_epochs: int
    trajectories_per_epoch: int
    tasks_per_trajectory: int
    train_steps: int
    unroll: int
    n_val_tasks: int
    meta_lr: float | None
    seed: int
    device: str
    data_root: str | None
    results_dir: str

    def training(self) -> dict:
        """The meta-training arguments (a checkpoint is reused only if these match)."""
        keys = ("meta_epochs", "trajectories_per_epoch", "tasks_per_trajectory", "train_steps", "unroll",
                "n_val_tasks", "meta_lr", "seed")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def settings(name: str, kind: str, profile: str = "quick", *, seeds=None, n_tasks=None, steps=None,
             meta_epochs=None, meta_lr=None, seed: int = 0, device: str = "cpu", data_root=None,
             results_dir=None, **overrides) -> Settings:
    """Settings of experiment ``name`` for ``profile``; any argument given (not None) overrides the profile."""
    check_choice("kind", kind, TRAINING)
    check_choice("profile", profile, PROFILES)
    check_choice("device", device, DEVICES)
    check_seed("seed", seed)
    values = {**TRAINING[kind][profile], **EVALUATION[kind][profile]}
    given = dict(seeds=seeds, n_tasks=n_tasks, steps=steps, meta_epochs=meta_epochs, **overrides)
    unknown = set(given) - set(values)
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(values)}")
    values.update({k: v for k, v in given.items() if v is not None})
    if isinstance(values["seeds"], int) or not values["seeds"]:
        raise ValueError(f"seeds={values['seeds']!r} must be a non-empty list of non-negative integers")
    values["seeds"] = tuple(check_seed("seeds (each)", s) for s in values["seeds"])
    for key in ("n_tasks", "steps", "tune_tasks", "tune_steps", "trajectories_per_epoch", "tasks_per_trajectory",
                "train_steps", "unroll", "n_val_tasks"):
        check_int(key, values[key])
    check_int("meta_epochs", values["meta_epochs"], minimum=0)
    if meta_lr is not None:
        check_positive_float("meta_lr", meta_lr)
    if values["unroll"] > values["train_steps"]:
        raise ValueError(f"unroll={values['unroll']} must not exceed train_steps={values['train_steps']}")
    if data_root is not None and not Path(data_root).exists():
        raise ValueError(f"data_root={str(data_root)!r} does not exist; pass an existing folder or None "
                         "(then L2L_DATA_DIR, ../shared/data or ./data is used)")
    results_dir = Path(results_dir) if results_dir else REPO_ROOT / "results" / profile / name
    return Settings(name=name, kind=kind, profile=profile, meta_lr=meta_lr, seed=seed, device=device,
                    data_root=None if data_root is None else str(data_root), results_dir=str(results_dir), **values)


def mlp_family(s: Settings, dataset: str = "mnist", hidden=(20,), activation: str = "sigmoid") -> MLPFamily:
    return MLPFamily(dataset=dataset, hidden=tuple(hidden), activation=activation, data_root=s.data_root,
                     device=s.device)


def setting_label(family) -> str:
    """A reader's name for a task family, e.g. 'MNIST 784-20-10 sigmoid'."""
    if isinstance(family, QuadraticFamily):
        return f"quadratic {family.dim}-d ({family.distribution})"
    titles = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "emnist_letters": "EMNIST Letters",
              "cifar10": "CIFAR-10", "svhn": "SVHN"}
    inputs, classes = dataset_shape(family.dataset)
    sizes = (inputs, *family.hidden, classes)
    return f"{titles[family.dataset]} {'-'.join(map(str, sizes))} {family.activation}"


def _digest(*parts) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def train_or_load(family, s: Settings, path: str | Path, progress: bool = True, config=None,
                  meta_update_schedule_bug: bool = False) -> tuple[LSTMOptimizer, pd.DataFrame | None]:
    """The LSTM at ``path`` if it was trained with these training settings, else meta-train and save it.

    ``config`` (default: the family's) and ``meta_update_schedule_bug`` are passed to ``meta_train``;
    the errata chapter uses them to train with the thesis code's defects.
    """
    path = Path(path)
    training = {**s.training(), **({"config": config.to_dict()} if config is not None else {}),
                **({"meta_update_schedule_bug": True} if meta_update_schedule_bug else {})}
    history_path = path.with_name(path.stem.replace("lstm", "history") + ".csv")
    if path.is_file():
        lstm, info = load_optimizer(path, device=s.device)
        if info["metadata"].get("training") == training and info["metadata"].get("family") == family.describe():
            return lstm, pd.read_csv(history_path) if history_path.is_file() else None
    result = meta_train(family, config=config, meta_lr=s.meta_lr, epochs=s.meta_epochs,
                        trajectories_per_epoch=s.trajectories_per_epoch, tasks_per_trajectory=s.tasks_per_trajectory,
                        steps=s.train_steps, unroll=s.unroll, n_val_tasks=s.n_val_tasks, seed=s.seed,
                        progress=progress, meta_update_schedule_bug=meta_update_schedule_bug,
                        checkpoint_path=path.with_name(f"training_state-{_digest(training, family.describe())}.pt"))
    write_frame(result.history, history_path)
    save_optimizer(path, result.best, seed=s.seed, family=family.describe(), training=training,
                   best_epoch=result.best_epoch)
    return result.best, result.history


@dataclass
class ExperimentResult:
    """What a notebook shows: the tidy frame, the tuning grid, the training history, the claims."""

    settings: Settings
    frame: pd.DataFrame
    tuning: pd.DataFrame
    claims: pd.DataFrame
    history: pd.DataFrame | None = None
    seconds: float = 0.0
    files: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)  # setting -> why it was not run (missing data)
    sources: dict = field(default_factory=dict)  # setting -> which data files were read
    peak_rss_mb: float = 0.0

    def summary(self) -> pd.DataFrame:
        """Mean [95% CI] per setting and optimizer: loss at steps 100 and 200, summed loss, accuracy."""
        parts = []
        for setting, group in self.frame.groupby("setting", sort=False):
            table = summarize(group.drop(columns="setting"), at_steps=(100, 200),
                              sum_steps=min(100, self.settings.steps))
            table.insert(0, "setting", setting)
            parts.append(table)
        return pd.concat(parts, ignore_index=True)

    def summary_text(self) -> pd.DataFrame:
        """``summary`` with each metric as 'mean [lo, hi]' strings, for display."""
        table = self.summary()
        out = table[["setting", "optimizer", "lr"]].copy()
        out["lr"] = out["lr"].map(lambda v: "meta-trained" if pd.isna(v) else f"{v:g}")
        for metric in [c for c in table.columns if f"{c} lo" in table.columns]:
            out[metric] = [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for m, lo, hi in
                           zip(table[metric], table[f"{metric} lo"], table[f"{metric} hi"])]
        out["diverged runs"] = table["diverged"] if "diverged" in table else 0
        return out

    def figure(self, title: str | None = None):
        return plot_losses(self.frame, col="setting", title=title)


def run_experiment(s: Settings, families: list, claims: list[Claim], train_family=None,
                   checkpoint: str | Path | None = None, progress: bool = True) -> ExperimentResult:
    """Train (or reuse) an LSTM on ``train_family``, then compare it with tuned baselines on each family."""
    start = time.perf_counter()
    out = Path(s.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(s.to_dict(), out / "settings.json")
    train_family = train_family or families[0]
    checkpoint = Path(checkpoint) if checkpoint else out / "lstm.pt"
    lstm, history = train_or_load(train_family, s, checkpoint, progress=progress)
    frames, tunings, skipped, sources = [], [], {}, {}
    for family in families:
        label = setting_label(family)
        if isinstance(family, MLPFamily):
            try:
                sources[label] = family.data.source
            except DatasetNotFoundError as err:  # e.g. SVHN on the offline machine: say so, never substitute
                skipped[label] = f"not run: {err}"
                continue
        tuned = tune_all(family, n_tasks=s.tune_tasks, steps=s.tune_steps, seed=s.seed)
        tunings += [r.table.assign(setting=label, chosen=r.table.lr == r.lr) for r in tuned.values()]
        optimizers = {"LSTM": lstm, **{r.baseline.label: r.baseline for r in tuned.values()}}
        frame = compare(optimizers, family, seeds=s.seeds, n_tasks=s.n_tasks, steps=s.steps, progress=progress)
        frames.append(frame.assign(setting=label))
    frame = pd.concat(frames, ignore_index=True)
    tuning = pd.concat(tunings, ignore_index=True)
    claims_table = check_claims(frame, [c.capped(s.steps) for c in claims], skipped)
    claims_table.insert(1, "profile", s.profile)
    files = {
        "frame": write_frame(frame, out / "losses.parquet"),
        "tuning": write_frame(tuning, out / "tuning.csv"),
        "claims": write_frame(claims_table, out / "claims.csv"),
        "checkpoint": checkpoint,
    }
    result = ExperimentResult(s, frame, tuning, claims_table, history, time.perf_counter() - start, files,
                              skipped, sources, peak_rss_mb())
    files["summary"] = write_frame(result.summary(), out / "summary.csv")
    files["run"] = write_json({"seconds": result.seconds, "peak_rss_mb": result.peak_rss_mb, "sources": sources,
                               "skipped": skipped}, out / "run.json")
    return result


# ------------------------------------------------------------------ the thesis' experiments 1-4
def run_quadratic(s: Settings, progress: bool = True) -> ExperimentResult:
    """Experiment 1: meta-train on 10-d quadratics, compare on unseen ones."""
    family = QuadraticFamily(device=s.device)
    claim = Claim("01 quadratics", "The LSTM optimizer beats SGD, RMSprop, Adam and NAG on unseen quadratics.",
                  "sum of loss over 100 steps: LSTM 49.6, Adam 98.8 (lr 0.1), NAG 107.5 (0.01), "
                  "RMSprop 133.5 (0.03), SGD 206.5 (0.01)", metric="sum@100")
    return run_experiment(s, [family], [claim], progress=progress)


MNIST_THESIS = ("sum of loss over 100 steps: LSTM 50.9, Adam 86.2 (lr 0.03), RMSprop 101.4 (0.01), "
                "NAG 115.9 (1.0), SGD 195.1 (1.0)")


def mnist_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 2's task families and claims."""
    family = mlp_family(s)
    claims = [Claim("02 MNIST", "The LSTM beats all four baselines on unseen MNIST tasks.", MNIST_THESIS,
                    metric="sum@100", setting=setting_label(family))]
    if s.steps >= 200:
        claims.append(Claim("02 MNIST", "The LSTM is still ahead at step 200, twice its training horizon.",
                            "the paper's MNIST figure shows the LSTM ahead up to step 200", metric="loss@200",
                            setting=setting_label(family)))
    return [family], claims


def run_mnist(s: Settings, progress: bool = True) -> ExperimentResult:
    """Experiment 2: meta-train on the MNIST MLP (one hidden layer of 20 sigmoid units), compare on MNIST-test."""
    families, claims = mnist_setup(s)
    return run_experiment(s, families, claims, progress=progress)


def mnist_checkpoint(s: Settings) -> Path:
    """Where experiment 2 of the same results tree keeps its LSTM (experiments 3 and 4 reuse it)."""
    return Path(s.results_dir).parent / "02_mnist" / "lstm.pt"


def architectures_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 3's task families and claims."""
    wide, deep = mlp_family(s, hidden=(40,)), mlp_family(s, hidden=(20, 20))
    claims = [
        Claim("03 architectures", "The MNIST-trained LSTM still wins with 40 hidden units.",
              "thesis slides: LSTM ahead of all baselines", metric="sum@100", setting=setting_label(wide)),
        Claim("03 architectures", "The MNIST-trained LSTM still wins with two hidden layers.",
              "thesis slides: LSTM ahead of all baselines", metric="sum@100", setting=setting_label(deep)),
    ]
    return [wide, deep], claims


def run_architectures(s: Settings, progress: bool = True) -> ExperimentResult:
    """Experiment 3: the MNIST-trained LSTM on 40 hidden units and on two hidden layers."""
    families, claims = architectures_setup(s)
    return run_experiment(s, families, claims, train_family=mlp_family(s), checkpoint=mnist_checkpoint(s),
                          progress=progress)


def relu_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 4's task family and claim."""
    relu = mlp_family(s, activation="relu")
    claims = [Claim("04 ReLU", "The MNIST-trained LSTM fails with ReLU activations (a baseline beats it).",
                    "thesis slides: the LSTM fails with ReLU", kind="lstm_fails", metric="sum@100",
                    setting=setting_label(relu))]
    return [relu], claims


def run_relu(s: Settings, progress: bool = True) -> ExperimentResult:
    """Experiment 4: the MNIST-trained (sigmoid) LSTM on the same MLP with ReLU activations."""
    families, claims = relu_setup(s)
    return run_experiment(s, families, claims, train_family=mlp_family(s), checkpoint=mnist_checkpoint(s),
                          progress=progress)


def mnist_like_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 5's task families and claims."""
    fashion, letters = mlp_family(s, dataset="fashion_mnist"), mlp_family(s, dataset="emnist_letters")
    claims = [
        Claim("05 MNIST-like", "Transfer within the MNIST family: the LSTM beats all baselines on Fashion-MNIST.",
              "thesis: LSTM ahead on Fashion-MNIST", metric="sum@100", setting=setting_label(fashion)),
        Claim("05 MNIST-like", "On EMNIST Letters the LSTM is ahead over the first 100 steps.",
              "thesis: LSTM ahead early on EMNIST Letters", metric="sum@100", setting=setting_label(letters)),
        Claim("05 MNIST-like", "On EMNIST Letters NAG overtakes the LSTM after about 100 steps (better at step 200).",
              "thesis: NAG overtakes the LSTM around step 100", kind="lstm_fails", metric="loss@200",
              setting=setting_label(letters), baseline="NAG"),
    ]
    return [fashion, letters], claims


def run_mnist_like(s: Settings, progress: bool = True) -> ExperimentResult:
    """Experiment 5: the MNIST-trained LSTM on Fashion-MNIST and EMNIST Letters (26 classes), 784-20-C sigmoid."""
    families, claims = mnist_like_setup(s)
    return run_experiment(s, families, claims, train_family=mlp_family(s), checkpoint=mnist_checkpoint(s),
                          progress=progress)


def cifar_svhn_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 6's task families and claims."""
    cifar, svhn = mlp_family(s, dataset="cifar10"), mlp_family(s, dataset="svhn")
    claims = [
        Claim("06 CIFAR-10 / SVHN", "Transfer fails on unrelated data: no advantage for the LSTM on CIFAR-10.",
              "thesis: roughly a tie on CIFAR-10, with early loss spikes", kind="no_lstm_advantage",
              metric="sum@100", setting=setting_label(cifar)),
        Claim("06 CIFAR-10 / SVHN", "Transfer fails on unrelated data: no advantage for the LSTM on SVHN.",
              "thesis: roughly a tie on SVHN", kind="no_lstm_advantage", metric="sum@100",
              setting="SVHN 3072-20-10 sigmoid"),
    ]
    return [cifar, svhn], claims


def run_cifar_svhn(s: Settings, progress: bool = True) -> ExperimentResult:
    """Experiment 6: the MNIST-trained LSTM on unrelated data, CIFAR-10 and SVHN (3072-20-10 sigmoid)."""
    families, claims = cifar_svhn_setup(s)
    return run_experiment(s, families, claims, train_family=mlp_family(s), checkpoint=mnist_checkpoint(s),
                          progress=progress)


def data_sources(result: ExperimentResult):
    """Markdown listing which files each setting read, and which settings were not run and why."""
    from IPython.display import Markdown

    lines = [f"- **{label}**: {source}" for label, source in result.sources.items()]
    lines += [f"- **{label}**: {reason}" for label, reason in result.skipped.items()]
    return Markdown("Data used:\n\n" + "\n".join(lines))


# ------------------------------------------------------------------ what notebooks display
def profile_note(s: Settings):
    """A one-line Markdown banner saying what this run's numbers can be trusted for."""
    from IPython.display import Markdown

    text = {
        "smoke": "**Profile `smoke`**: a seconds-long pipeline check. Its numbers mean nothing; run `full` for results.",
        "quick": "**Profile `quick`**: a first answer in minutes, with fewer seeds, tasks and meta-training than `full`.",
        "full": "**Profile `full`**: the settings the book reports.",
    }[s.profile]
    n = len(s.seeds) * s.n_tasks
    return Markdown(f"{text} Evaluation: {len(s.seeds)} seeds x {s.n_tasks} held-out tasks = {n} runs per "
                    f"optimizer, {s.steps} steps; meta-training: {s.meta_epochs} epochs x "
                    f"{s.trajectories_per_epoch} trajectories of {s.train_steps} steps (unroll {s.unroll}).")


CLAIM_COLUMNS = ["experiment", "setting", "claim", "thesis", "metric", "ours", "verdict"]


def glue_result(result: ExperimentResult) -> None:
    """Glue the claims table and each verdict under '<name>.claims' and '<name>.verdict.<i>' for the book."""
    from myst_nb import glue

    name = result.settings.name
    glue(f"{name}.claims", result.claims[CLAIM_COLUMNS].style.hide(axis="index"), display=False)
    for i, row in result.claims.iterrows():
        glue(f"{name}.verdict.{i}", row["verdict"], display=False)
        glue(f"{name}.ours.{i}", row["ours"], display=False)
    glue(f"{name}.minutes", f"{result.seconds / 60:.1f}", display=False)


def collect_claims(results_root: str | Path) -> pd.DataFrame:
    """Every experiment's claims.csv under ``results_root``, in experiment order."""
    files = sorted(Path(results_root).glob("*/claims.csv"))
    if not files:
        raise FileNotFoundError(f"results_root={str(results_root)!r} holds no */claims.csv; run the experiment notebooks first")
    return pd.concat([pd.read_csv(f, keep_default_na=False) for f in files], ignore_index=True)
