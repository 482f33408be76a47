"""Errata: the thesis code's four defects (``defects``), each re-run switched on and off, and which conclusions survive.

(a) baselines tuned as SGD: affects experiments 3, 4, 6. (b) the EMNIST Letters LSTM without gradient preprocessing
and output scale (it stayed at chance in the thesis). (c) the thesis loop's meta-update schedule. (d) LSTM state
shared across parameter tensors.

``run_errata`` re-checks the thesis' claims with each defect on and off, reusing the experiment chapters' results
(same tasks, same fixed optimizers) where they exist. Every LSTM of this chapter is meta-trained from every one of
the profile's meta-training seeds, with the profile's ``errata_trajectories`` budget; the fixed arm of (c) and (d) is
experiment 2's LSTMs of the same seeds as selected at that budget.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l2l_core.evaluation.claims import Claim, Part, check_claims, claim_data
from l2l_core.evaluation.defect_effects import defect_effect, holm_effects
from l2l_core.tasks.data import DatasetNotFoundError
from l2l_core.evaluation.evaluate import LSTM_LABEL, Comparison, compare, compare_together
from l2l_core.experiments.setups import SIDE_ARM_META_SEEDS, lstms_at_budget, mnist_like_setup, mnist_lstms, mnist_setup
from l2l_core.experiments.lstms import TrainedLSTMs, plan_seeds, train_together
from l2l_core.experiments.settings import Settings, setting_label
from l2l_core.io import write_frame, write_json
from l2l_core.runtime.memory import peak_rss_mb
from l2l_core.errata.defects import EMNIST_DEFECT_CONFIG, SHARED_STATE, as_tuned_by_sgd, thesis_loop_segments
from l2l_core.experiments.reuse import CHAPTERS, chapter_frame, tuned_baselines

DEFECTS = {
    "a": "baselines tuned as SGD",
    "b": "EMNIST-trained LSTM without preprocessing and output scale",
    "c": "updates 0, 20, 40, 60 and 80-99 never meta-trained",
    "d": "LSTM state shared across parameter tensors",
}
MNIST_LSTM_LABEL = "LSTM (MNIST-trained)"
CHANCE_26 = 100 * math.log(26)  # summed loss over 100 steps of a 26-class classifier at chance


def errata_budget(s: Settings) -> dict:
    """The seeds and trajectories every LSTM of this chapter is meta-trained with (both arms alike): the main arm's
    first ``SIDE_ARM_META_SEEDS`` seeds."""
    return dict(seeds=s.meta_seeds[:SIDE_ARM_META_SEEDS], trajectories=s.errata_trajectories)


def defect_arms(s: Settings) -> dict:
    """Every set of LSTMs this chapter meta-trains, by file name, with its family and ``meta_train`` options: (b)'s
    EMNIST Letters arms without and with preprocessing, (c)'s thesis-loop schedule and (d)'s shared state on MNIST
    (the fixed arms of (c) and (d) are chapter 02's LSTMs)."""
    letters, mnist = mnist_like_setup(s)[0][1], mnist_setup(s)[0][0]
    shared = dataclasses.replace(mnist.default_lstm, state_layout=SHARED_STATE)
    return {"lstm_emnist_no_preprocessing": (letters, dict(config=EMNIST_DEFECT_CONFIG)),
            "lstm_emnist": (letters, {}),
            "lstm_thesis_schedule": (mnist, dict(schedule=thesis_loop_segments)),
            "lstm_shared_state": (mnist, dict(config=shared))}


def _train(s: Settings, names, progress: bool) -> list[TrainedLSTMs]:
    """The LSTMs of arms ``names`` (keys of ``defect_arms``), their seeds still to train run as one batch of jobs; reused
    where already trained (by ``meta_train_all`` or an earlier run)."""
    arms = defect_arms(s)
    return train_together([plan_seeds(arms[name][0], s, _folder(s), name, progress=progress, **arms[name][1],
                                      **errata_budget(s)) for name in names])


def meta_train_all(s: Settings, progress: bool = True) -> dict[str, TrainedLSTMs]:
    """Every LSTM of defects (b)-(d), meta-trained (or reused) as one batch of jobs, so that both workers stay busy
    across the arms; the defects' re-runs then read them. Same LSTMs as when each re-run trains its own."""
    names = list(defect_arms(s))
    return dict(zip(names, _train(s, names, progress)))


@dataclass
class ErrataResult:
    """The on/off claims table, the frames behind each defect's figure, and run facts."""

    settings: Settings
    table: pd.DataFrame
    frames: dict = field(default_factory=dict)  # defect letter -> frame with a 'variant' column
    notes: dict = field(default_factory=dict)   # defect letter -> computed sentence
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def _compare_lstms(arms: list[dict], family, s: Settings, progress: bool) -> list[pd.DataFrame]:
    """Each arm's LSTMs (meta_seed -> LSTM) on the profile's held-out tasks of ``family``, as one batch of jobs."""
    return compare_together([Comparison.plan({LSTM_LABEL: lstms}, family, seeds=s.seeds, progress=progress,
                                             n_tasks=s.n_tasks, steps=s.steps) for lstms in arms])


def _on_off_rows(defect: str, claims: list[Claim], with_defect: pd.DataFrame, fixed: pd.DataFrame,
                 steps: int) -> list[dict]:
    """One row per claim: its verdict with the defect and without, and whether the conclusion survives."""
    claims = [c.capped(steps) for c in claims]
    on = check_claims(with_defect, claims)
    off = check_claims(fixed, claims)
    rows = []
    for claim, (_, a), (_, b) in zip(claims, on.iterrows(), off.iterrows()):
        survives = {"holds": "yes", "does not hold": "no", "inconclusive": "uncertain"}.get(b["verdict"], "not run")
        try:  # the defect's effect itself: the paired contrast of the arms on the claim's distance
            effect = defect_effect(claim_data(with_defect, claim), claim_data(fixed, claim))
        except ValueError as error:  # arms on different seeds or tasks: no paired test
            effect = {"delta": math.nan, "p_effect": math.nan, "p_equivalent": math.nan, "why_not_paired": str(error)}
        rows.append({"defect": f"({defect}) {DEFECTS[defect]}", "experiment": a["experiment"], "setting": a["setting"],
                     "claim": a["claim"], "metric": a["metric"], "with defect": a["verdict"], "fixed": b["verdict"],
                     "ours with defect": a["ours"], "ours fixed": b["ours"], "survives the fix": survives, **effect})
    return rows


def _tuned_as_sgd(s: Settings, progress: bool) -> tuple[list[dict], pd.DataFrame]:
    """Defect (a) on experiments 3, 4 and 6: baselines tuned as SGD against the chapters' (fixed) runs."""
    rows, frames = [], []
    for chapter in ("03_architectures", "04_relu", "06_cifar_svhn"):
        families, claims = CHAPTERS[chapter](s)
        fixed = chapter_frame(s, chapter, progress)
        for family in families:
            label = setting_label(family)
            try:
                family.data
            except DatasetNotFoundError:
                continue  # the chapter already reports it as not run
            tuned = as_tuned_by_sgd(tuned_baselines(s, family))
            mine = fixed[fixed.setting == label]
            # SGD and NAG are tuned by their own runs either way, so they get the chapter's rates: a baseline
            # whose rate the chapter already ran on these tasks and seeds is reused, the others are run
            reused, to_run = [mine[mine.optimizer == LSTM_LABEL]], {}
            for r in tuned.values():
                same = mine[(mine.optimizer == r.baseline.label) & (mine.lr == r.lr)]
                if len(same):
                    reused.append(same)
                else:
                    to_run[r.baseline.label] = r.baseline
            buggy = compare(to_run, family, seeds=s.seeds, n_tasks=s.n_tasks, steps=s.steps,
                            progress=progress).assign(setting=label) if to_run else None
            with_defect = pd.concat(reused + [buggy], ignore_index=True)
            setting_claims = [c for c in claims if c.setting == label]
            rows += _on_off_rows("a", setting_claims, with_defect, mine, s.steps)
            frames += [with_defect.assign(variant="with defect", panel=f"{label}: with defect"),
                       mine.assign(variant="fixed", panel=f"{label}: fixed")]
    return rows, pd.concat(frames, ignore_index=True)


def emnist_own_claim(s: Settings) -> Claim:
    """Defect (b)'s claim: the thesis' own EMNIST Letters LSTM (the one claim of this chapter no experiment states)."""
    label = setting_label(mnist_like_setup(s)[0][1])
    return Claim("05 MNIST-like", "An LSTM meta-trained on EMNIST Letters itself has no advantage there.",
                 f"thesis: it stayed near chance, about 100 ln 27 = {100 * math.log(27):.0f} summed loss "
                 "(27 outputs), and the run was interrupted", "MetaLearning.ipynb (thesis code), cell 72",
                 (Part("no_advantage"),), metric="sum@100", setting=label)


def _emnist_without_preprocessing(s: Settings, progress: bool) -> tuple[list[dict], pd.DataFrame, str]:
    """Defect (b): meta-train on EMNIST Letters without and with preprocessing/output scale."""
    letters = mnist_like_setup(s)[0][1]
    label = setting_label(letters)
    claim = emnist_own_claim(s)
    fixed_chapter = chapter_frame(s, "05_mnist_like", progress)
    others = fixed_chapter[fixed_chapter.setting == label].replace({"optimizer": {LSTM_LABEL: MNIST_LSTM_LABEL}})
    arms = {"with defect": "lstm_emnist_no_preprocessing", "fixed": "lstm_emnist"}
    owns = _compare_lstms([t.lstms for t in _train(s, arms.values(), progress)], letters, s, progress)
    frames = {variant: pd.concat([own.assign(setting=label), others], ignore_index=True)
              for variant, own in zip(arms, owns)}
    rows = _on_off_rows("b", [claim], frames["with defect"], frames["fixed"], s.steps)
    k = min(100, s.steps)
    sums = {v: f[(f.optimizer == LSTM_LABEL) & (f.step < k)].groupby(["meta_seed", "seed", "task"]).loss.sum().mean()
            for v, f in frames.items()}
    note = (f"Summed loss over steps 0-{k - 1} of the EMNIST-trained LSTM: {sums['with defect']:.1f} without "
            f"preprocessing (chance: {k} ln 26 = {k * math.log(26):.1f}), {sums['fixed']:.1f} with it.")
    frame = pd.concat([f.assign(variant=v, panel=f"EMNIST-trained LSTM: {v}") for v, f in frames.items()],
                      ignore_index=True)
    return rows, frame, note


def _mnist_training_defect(defect: str, s: Settings, progress: bool) -> tuple[list[dict], pd.DataFrame, str]:
    """Defects (c) and (d): an MNIST LSTM trained (and, for d, run) with the defect, against experiment 2."""
    families, claims = mnist_setup(s)
    mnist = families[0]
    label = setting_label(mnist)
    claims = [c for c in claims if c.setting == label]
    chapter = chapter_frame(s, "02_mnist", progress)
    baselines = chapter[(chapter.setting == label) & (chapter.optimizer != LSTM_LABEL)]
    budget = errata_budget(s)
    (trained,) = _train(s, ["lstm_thesis_schedule" if defect == "c" else "lstm_shared_state"], progress)
    lstms = trained.lstms
    # the fixed arm: experiment 2's LSTMs of the same seeds as selected at the same budget
    at_budget = lstms_at_budget(mnist_lstms(s, progress=progress), s, budget["trajectories"])
    owns = _compare_lstms([lstms, {k: at_budget[k] for k in budget["seeds"]}], mnist, s, progress)
    arms = {variant: pd.concat([own.assign(setting=label), baselines], ignore_index=True)
            for variant, own in zip(("with defect", "fixed"), owns)}
    with_defect, fixed = arms["with defect"], arms["fixed"]
    rows = _on_off_rows(defect, claims, with_defect, fixed, s.steps)
    lstm_rows = lambda f: f[f.optimizer == LSTM_LABEL]
    if defect == "c":  # the updates after the last meta-update (81-99 of 100, unroll 20) were never trained
        last = (s.train_steps - 1) // s.unroll * s.unroll
        window = lambda f: lstm_rows(f)[(f.step > last) & (f.step <= min(s.train_steps, s.steps))].loss.mean()
        note = (f"Mean LSTM loss over steps {last + 1}-{min(s.train_steps, s.steps)} (after the last meta-update "
                f"of the defective schedule): {window(with_defect):.4g} with the defect, {window(fixed):.4g} fixed.")
    else:
        k = min(100, s.steps)
        total = lambda f: lstm_rows(f)[f.step < k].groupby(["meta_seed", "seed", "task"]).loss.sum().mean()
        note = (f"Summed LSTM loss over steps 0-{k - 1}: {total(with_defect):.4g} with the defect, "
                f"{total(fixed):.4g} fixed.")
    frame = pd.concat([with_defect.assign(variant="with defect", panel="with defect"),
                       fixed.assign(variant="fixed", panel="fixed")], ignore_index=True)
    return rows, frame, note


@dataclass
class DefectRun:
    """One defect re-run on and off: a claim-table row per affected claim, the losses behind its figure (a
    'variant' column), a computed sentence, and the seconds it took."""

    rows: list
    frame: pd.DataFrame
    note: str = ""
    seconds: float = 0.0


def _timed(run, *args) -> DefectRun:
    start = time.perf_counter()
    rows, frame, *note = run(*args)
    return DefectRun(rows, frame, note[0] if note else "", time.perf_counter() - start)


def _folder(s: Settings) -> Path:
    out = Path(s.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def rerun_tuned_as_sgd(s: Settings, progress: bool = True) -> DefectRun:
    """(a) Chapters 03, 04 and 06's baselines with the rates SGD's runs chose, against the chapters' own runs."""
    return _timed(_tuned_as_sgd, s, progress)


def rerun_emnist_without_preprocessing(s: Settings, progress: bool = True) -> DefectRun:
    """(b) LSTMs meta-trained on EMNIST Letters without and with preprocessing and output scale."""
    return _timed(_emnist_without_preprocessing, s, progress)


def rerun_mnist_with(defect: str, s: Settings, progress: bool = True) -> DefectRun:
    """(c) or (d): MNIST LSTMs meta-trained (and for d, run) with the defect, against chapter 02's at that budget."""
    if defect not in ("c", "d"):
        raise ValueError(f"defect={defect!r} must be 'c' (meta-update schedule) or 'd' (shared state)")
    return _timed(_mnist_training_defect, defect, s, progress)


def errata_result(s: Settings, runs: dict[str, DefectRun]) -> ErrataResult:
    """The on/off claim table from each defect's re-run (``runs``: letter -> DefectRun), written to the results."""
    out = _folder(s)
    write_json(s.to_dict(), out / "settings.json")
    table = holm_effects(pd.DataFrame([row for run in runs.values() for row in run.rows]))  # Holm across the table
    table.insert(1, "profile", s.profile)
    write_frame(table, out / "errata.csv")
    for defect, run in runs.items():
        write_frame(run.frame, out / f"losses_{defect}.parquet")
    notes = {defect: run.note for defect, run in runs.items() if run.note}
    result = ErrataResult(s, table, {d: r.frame for d, r in runs.items()}, notes,
                          sum(r.seconds for r in runs.values()), peak_rss_mb())
    write_json({"seconds": result.seconds, "peak_rss_mb": result.peak_rss_mb, "notes": notes}, out / "run.json")
    return result


def run_errata(s: Settings, progress: bool = True) -> ErrataResult:
    """The chapter in one call: each defect re-run on and off, then the table (the notebook shows the steps)."""
    meta_train_all(s, progress)
    return errata_result(s, {"a": rerun_tuned_as_sgd(s, progress),
                             "b": rerun_emnist_without_preprocessing(s, progress),
                             "c": rerun_mnist_with("c", s, progress),
                             "d": rerun_mnist_with("d", s, progress)})


ERRATA_COLUMNS = ["defect", "experiment", "setting", "claim", "with defect", "fixed", "survives the fix",
                  "effect on the distance, % [95% CI]", "the defect's effect (Holm)"]


def glue_errata(result: ErrataResult) -> None:
    """Glue the summary table, the detailed numbers, the counts and each defect's note for the book."""
    from myst_nb import glue

    table = result.table.copy()
    table["effect on the distance, % [95% CI]"] = [
        "" if pd.isna(d) else f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        for d, lo, hi in zip(table["delta"], table.get("delta_lo", math.nan), table.get("delta_hi", math.nan))]
    table["the defect's effect (Holm)"] = table["effect"]
    glue("errata.table", table[ERRATA_COLUMNS].style.hide(axis="index"), display=False)
    glue("errata.details", table[["defect", "setting", "claim", "metric", "ours with defect", "ours fixed"]]
         .style.hide(axis="index"), display=False)
    glue("errata.n", str(len(table)), display=False)
    glue("errata.changed", str(int((table["effect"] == "changes it").sum())), display=False)
    for answer in ("yes", "no", "uncertain"):
        glue(f"errata.survives_{answer}", str(int((table["survives the fix"] == answer).sum())), display=False)
    for defect in DEFECTS:
        glue(f"errata.note.{defect}", result.notes.get(defect, ""), display=False)
