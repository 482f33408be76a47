"""One chapter's experiment as the method page's steps: meta-train, tune the baselines, compare, result."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l2l_core.evaluation.tuning import tune_all
from l2l_core.evaluation.claims import Claim, check_claims
from l2l_core.tasks.data import DatasetNotFoundError
from l2l_core.evaluation.evaluate import LSTM_LABEL, Comparison, compare_together, summarize
from l2l_core.io import write_frame, write_json
from l2l_core.runtime.memory import peak_rss_mb
from l2l_core.tasks.families import MLPFamily

from l2l_core.experiments.lstms import plan_seeds, train_together
from l2l_core.experiments.settings import Settings, setting_label

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


def lstm_name(family, canonical) -> str:
    """File stem of the LSTMs meta-trained on ``family``: 'lstm' for the chapter's own family, else its description."""
    return "lstm" if family == canonical else f"lstm-{family.describe()}"


def run_experiment(s: Settings, families: list, claims: list[Claim], train_family=None,
                   lstm_dir: str | Path | None = None, progress: bool = True, snapshot_budgets=(),
                   seeds_of: dict | None = None, lstm_owner: str | None = None) -> ExperimentResult:
    """Meta-train (or reuse) one LSTM per meta-training seed, then compare them with tuned baselines on each family:
    :class:`Experiment`'s steps in one call."""
    return Experiment(s, families, claims, train_family, lstm_dir, snapshot_budgets, seeds_of, lstm_owner).run(progress)


@dataclass
class Experiment:
    """One chapter's experiment as the steps of the method page, each one call: ``meta_train`` (one LSTM per
    meta-training seed, as jobs), ``tune_baselines`` (each baseline's learning rate on a grid, on validation
    tasks), ``compare`` (LSTMs and tuned baselines on the same held-out tasks), ``result`` (tables, claim check,
    files). ``run`` does all four.

    With ``train_family`` every family is run by the LSTMs trained on it (transfer); without, each family trains
    its own. LSTMs live in ``lstm_dir`` (default: this experiment's results folder). ``seeds_of`` maps a training
    family to its meta-training seeds where they are not ``s.meta_seeds``. ``lstm_owner``: the chapter whose
    folder ``lstm_dir`` is, when it is another chapter's; its LSTMs are then read, never trained here.
    A family whose data set is missing is skipped, and the result says why (never substituted).
    """

    s: Settings
    families: list
    claims: list
    train_family: object = None
    lstm_dir: str | Path | None = None
    snapshot_budgets: tuple = ()
    seeds_of: dict | None = None
    lstm_owner: str | None = None

    def __post_init__(self):
        self._start = time.perf_counter()
        self.out = Path(self.s.results_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.s.to_dict(), self.out / "settings.json")
        self.lstm_dir = Path(self.lstm_dir) if self.lstm_dir else self.out
        self.skipped, self.sources = {}, {}
        self.runnable = []
        for family in self.families:
            label = setting_label(family)
            if isinstance(family, MLPFamily):
                try:
                    self.sources[label] = family.data.source
                except DatasetNotFoundError as err:  # e.g. SVHN on the offline machine: say so, never substitute
                    self.skipped[label] = f"not run: {err}"
                    continue
            self.runnable.append(family)
        self.trained, self.tuned, self.frame = {}, {}, None

    def _trainer(self, family):
        return self.train_family or family

    def meta_train(self, progress: bool = True) -> dict:
        """One LSTM per meta-training seed for every training family (reused when already trained): {family: TrainedLSTMs}."""
        canonical = self.train_family or self.families[0]
        trainers = [t for t in dict.fromkeys(self._trainer(f) for f in self.runnable) if t not in self.trained]
        plans = [plan_seeds(t, self.s, self.lstm_dir, lstm_name(t, canonical), seeds=(self.seeds_of or {}).get(t),
                            progress=progress, snapshot_budgets=self.snapshot_budgets, owner=self.lstm_owner)
                 for t in trainers]
        self.trained.update(zip(trainers, train_together(plans)))  # every family's seeds as one batch of jobs
        return self.trained

    def tune_baselines(self) -> dict:
        """SGD, RMSprop, Adam and NAG tuned on each family's validation tasks: {setting: {name: TuningResult}}."""
        s = self.s
        for family in self.runnable:
            self.tuned[setting_label(family)] = tune_all(family, n_tasks=s.tune_tasks, steps=s.tune_steps, seed=s.seed)
        return self.tuned

    def compare(self, progress: bool = True) -> pd.DataFrame:
        """Every LSTM and every tuned baseline on the same held-out tasks of each family (as jobs): one tidy frame."""
        if not self.trained:
            self.meta_train(progress)
        if not self.tuned:
            self.tune_baselines()
        s, plans = self.s, []
        for family in self.runnable:
            tuned = self.tuned[setting_label(family)]
            optimizers = {LSTM_LABEL: self.trained[self._trainer(family)].lstms,
                          **{r.baseline.label: r.baseline for r in tuned.values()}}
            plans.append(Comparison.plan(optimizers, family, seeds=s.seeds, progress=progress, n_tasks=s.n_tasks,
                                         steps=s.steps))
        frames = compare_together(plans)  # every family's jobs as one batch
        self.frame = pd.concat([f.assign(setting=setting_label(family)) for f, family in zip(frames, self.runnable)],
                               ignore_index=True)
        return self.frame

    def result(self) -> ExperimentResult:
        """The claim check, the summary tables and every results file (``results_dir``)."""
        if self.frame is None:
            self.compare()
        s, out = self.s, self.out
        tuning = pd.concat([r.table.assign(setting=label, chosen=r.table.lr == r.lr)
                            for label, tuned in self.tuned.items() for r in tuned.values()], ignore_index=True)
        history = pd.concat([t.history.assign(setting=setting_label(f)) for f, t in self.trained.items()],
                            ignore_index=True)
        claims_table = check_claims(self.frame, [c.capped(s.steps) for c in self.claims], self.skipped)
        claims_table.insert(1, "profile", s.profile)
        files = {
            "frame": write_frame(self.frame, out / "losses.parquet"),
            "tuning": write_frame(tuning, out / "tuning.csv"),
            "claims": write_frame(claims_table, out / "claims.csv"),
            "history": write_frame(history, out / "meta_training.csv"),
            "lstms": self.lstm_dir,
        }
        result = ExperimentResult(s, self.frame, tuning, claims_table, history, time.perf_counter() - self._start,
                                  files, self.skipped, self.sources, peak_rss_mb())
        files["summary"] = write_frame(result.summary(), out / "summary.csv")
        files["run"] = write_json({"seconds": result.seconds, "peak_rss_mb": result.peak_rss_mb,
                                   "sources": self.sources, "skipped": self.skipped}, out / "run.json")
        return result

    def run(self, progress: bool = True) -> ExperimentResult:
        self.meta_train(progress)
        self.tune_baselines()
        self.compare(progress)
        return self.result()


# Where each claim's wording comes from: the thesis' slides ("What did we notice?") or a markdown cell of the thesis
# notebook (MetaLearning.ipynb of kostagiolasn/MetaLearning-MScThesis, commit 75903cf, cells counted from 0).
