"""Claim checks: a thesis claim next to what our runs show, with a verdict from one-sided tests.

Every LSTM meta-trained from seed s runs on the same held-out tasks i as the baselines, so each baseline
gives a crossed table of paired differences d_si = LSTM - baseline (oriented so that negative means the
LSTM is better). Seeds and tasks are both random draws, so the mean difference gets its interval and
p-values from ``stats.crossed_mean_ci``; pooling all S*I runs as independent would ignore that a bad seed
shifts every one of its tasks, and overstate certainty.

A ``Claim`` is a conjunction of ``Part``s; each part is a statement about the LSTM versus a set of
baselines (``KINDS``), some with an equivalence margin delta = ``MARGINS[kind]`` * |baseline's mean|.
Each part and claim gets two p-values, p_holds (H1: the claim is true) and p_fails (H1: it is false);
the verdict at ``ALPHA`` = 0.025 per direction (as 95% two-sided intervals) is "holds", "does not hold",
or "inconclusive" when neither test rejects. The same rule is applied to each meta-training seed alone
and the row counts the seeds on which the claim holds.

A run whose metric is NaN (it diverged within the metric's window) is scored as the worst finite value
of that metric in the setting (largest loss, smallest accuracy) and counted, instead of being dropped:
dropping would remove exactly the tasks on which an optimizer fails. ``holm_verdicts`` adjusts the
p-values of a whole claims table (Holm-Bonferroni), since the book draws conclusions from all of them.

Over 300 lines on purpose: these rules are one statistical procedure, read together beside the method page.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from l2l_core.checks import check_choice
from l2l_core.evaluation.evaluate import LSTM_LABEL, with_meta_seed
from l2l_core.evaluation.stats import CrossedCI, crossed_mean_ci, holm

VERDICTS = ("holds", "does not hold", "inconclusive", "not run")
KINDS = ("better", "worse", "negligible", "wide_margin", "no_advantage")
ALPHA = 0.025  # per direction: matches the 95% two-sided intervals shown in the rows

# Relative margins, as a fraction of |the baseline's mean metric| (for sum@100: of its summed loss).
MARGINS = {
    # "the LSTM and the baseline are about equal": the difference lies within +-5% (TOST equivalence test)
    "negligible": 0.05,
    # "the LSTM wins by a wide margin": at least 10% lower summed loss than each listed baseline
    "wide_margin": 0.10,
    # "no advantage for the LSTM": against at least one listed baseline the LSTM is not better by more than 5%
    # (non-superiority); a 5% edge is what a reader would not call an advantage
    "no_advantage": 0.05,
}
_LEGACY_KINDS = {"lstm_wins": "better", "lstm_fails": "worse", "no_lstm_advantage": "no_advantage"}

COLUMNS = ["experiment", "setting", "claim", "thesis", "source", "metric", "test", "ours", "seeds",
           "seeds_holding", "n_seeds", "n_tasks", "verdict", "p_holds", "p_fails", "lstm", "lstm_lo", "lstm_hi",
           "best_baseline", "best_baseline_value", "difference", "difference_lo", "difference_hi", "margin",
           "diverged_runs"]


def margins_table() -> pd.DataFrame:
    """The margins of ``MARGINS`` as a small table for the book."""
    meaning = {"negligible": "LSTM within this fraction of each listed baseline (either direction)",
               "wide_margin": "LSTM better than each listed baseline by more than this fraction",
               "no_advantage": "LSTM not better than at least one listed baseline by more than this fraction"}
    return pd.DataFrame([{"kind": k, "margin": v, "meaning": meaning[k]} for k, v in MARGINS.items()])


def _parse_metric(metric: str) -> tuple[str, int]:
    if metric == "accuracy":
        return "accuracy", 0
    kind, _, k = metric.partition("@")
    if kind not in ("sum", "loss") or not k.isdigit():
        raise ValueError(f"metric={metric!r} is not allowed; use 'sum@K', 'loss@K' or 'accuracy'")
    return kind, int(k)


def per_task_metric(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One value per (optimizer, meta_seed, seed, task): 'sum@K' (loss summed over steps 0..K-1), 'loss@K',
    or 'accuracy'. NaN where the run diverged within the metric's window (for accuracy: at all)."""
    frame = with_meta_seed(frame)
    keys = ["optimizer", "meta_seed", "seed", "task"]
    kind, k = _parse_metric(metric)
    if kind == "accuracy":
        if "final_accuracy" not in frame:
            raise ValueError("metric='accuracy' needs a final_accuracy column")
        groups = frame.groupby(keys, sort=False)
        value = groups["final_accuracy"].first()
        if "diverged" in frame:
            value = value.where(~groups["diverged"].any())
    else:
        if frame["step"].max() < k:
            raise ValueError(f"metric={metric!r} needs step {k}, but the run stops at step {frame['step'].max()}")
        part = frame[frame.step < k] if kind == "sum" else frame[frame.step == k]
        groups = part.groupby(keys, sort=False)["loss"]
        value = groups.sum().where(groups.count() == groups.size())  # any NaN in the window: NaN
    value = value.where(np.isfinite(value))
    return value.rename("value").reset_index()


@dataclass(frozen=True)
class Part:
    """One testable statement about the LSTM versus ``baselines`` (labels; None = every baseline).

    With d = LSTM - baseline (baseline - LSTM for accuracy; negative: LSTM better) and
    delta = MARGINS[kind] * |baseline's mean|, per baseline:

    - "better": holds H1 d < 0, fails H1 d > 0;
    - "worse": holds H1 d > 0, fails H1 d < 0;
    - "negligible": holds |d| < delta (TOST: max of the two one-sided p), fails |d| > delta
      (2 * the smaller one-sided p);
    - "wide_margin": holds H1 d < -delta, fails H1 d > -delta;
    - "no_advantage": holds H1 d > -delta, fails H1 d < -delta.

    Over baselines "no_advantage" needs any one (holds: Bonferroni min p * n; fails: max p), the others
    need all (holds: max p, an intersection-union test; fails: min p * n).
    """

    kind: str
    baselines: tuple[str, ...] | None = None

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        if isinstance(self.baselines, str):
            object.__setattr__(self, "baselines", (self.baselines,))
        elif self.baselines is not None:
            object.__setattr__(self, "baselines", tuple(self.baselines))
            if not self.baselines:
                raise ValueError("baselines=() names no baseline; use None for every baseline")

    @property
    def margin(self) -> float:
        return MARGINS.get(self.kind, math.nan)

    def describe(self) -> str:
        names = self.baselines
        if self.kind == "no_advantage":
            who = "some baseline" if names is None else names[0] if len(names) == 1 else \
                "at least one of " + ", ".join(names)
            return f"LSTM not better than {who} by more than {self.margin:.0%}"
        who = "every baseline" if names is None else names[0] if len(names) == 1 else "each of " + ", ".join(names)
        if self.kind == "better":
            return f"LSTM better than {who}"
        if self.kind == "worse":
            return f"{who} better than the LSTM"
        if self.kind == "negligible":
            return f"LSTM within ±{self.margin:.0%} of {who}"
        return f"LSTM better than {who} by more than {self.margin:.0%}"

    def p_values(self, cis: dict[str, CrossedCI], deltas: dict[str, float]) -> tuple[float, float]:
        """(p_holds, p_fails) of this part from each baseline's difference interval and margin."""
        per = [_one_baseline(self.kind, cis[b], deltas[b]) for b in cis]
        n = len(per)
        holds, fails = [p for p, _ in per], [p for _, p in per]
        if self.kind == "no_advantage":
            return min(1.0, min(holds) * n), max(fails)
        return max(holds), min(1.0, min(fails) * n)


def _one_baseline(kind: str, ci: CrossedCI, delta: float) -> tuple[float, float]:
    if kind == "better":
        return ci.p_below(0.0), ci.p_above(0.0)
    if kind == "worse":
        return ci.p_above(0.0), ci.p_below(0.0)
    if kind == "negligible":
        return (max(ci.p_below(delta), ci.p_above(-delta)),
                min(1.0, 2 * min(ci.p_above(delta), ci.p_below(-delta))))
    if kind == "wide_margin":
        return ci.p_below(-delta), ci.p_above(-delta)
    return ci.p_above(-delta), ci.p_below(-delta)  # no_advantage


@dataclass(frozen=True)
class Claim:
    """A claim of the thesis about one experiment (and optionally one ``setting`` of its frame).

    ``thesis`` is what the thesis reported, ``source`` where the claim's wording comes from, ``parts`` the
    statements that must all hold (a ``Part``, or a sequence of them; default: LSTM better than every
    baseline). The old form ``kind=`` ("lstm_wins", "lstm_fails", "no_lstm_advantage") with an optional
    ``baseline=`` is still accepted and becomes one part ("better", "worse", "no_advantage"); note that
    "lstm_fails" without a baseline now means every baseline beats the LSTM.
    """

    experiment: str
    claim: str
    thesis: str
    source: str = ""
    parts: tuple[Part, ...] | None = None
    metric: str = "sum@100"
    setting: str | None = None
    kind: str | None = None
    baseline: str | None = None

    def __post_init__(self):
        _parse_metric(self.metric)
        parts = self.parts
        if self.kind is not None or self.baseline is not None:
            if parts is not None:
                raise ValueError("give either parts or the old kind=/baseline=, not both")
            kind = check_choice("kind", self.kind or "lstm_wins", tuple(_LEGACY_KINDS))
            parts = (Part(_LEGACY_KINDS[kind], None if self.baseline is None else (self.baseline,)),)
        elif parts is None:
            parts = (Part("better"),)
        elif isinstance(parts, Part):
            parts = (parts,)
        parts = tuple(p if isinstance(p, Part) else Part(*p) for p in parts)
        if not parts:
            raise ValueError("parts=() is empty; a claim needs at least one Part")
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "kind", None)
        object.__setattr__(self, "baseline", None)

    def capped(self, steps: int) -> "Claim":
        """The same claim on a run of only ``steps`` steps (smoke runs): 'sum@100' becomes 'sum@steps'."""
        kind, _, k = self.metric.partition("@")
        if k.isdigit() and int(k) > steps:
            return replace(self, metric=f"{kind}@{steps}")
        return self

    def describe(self) -> str:
        """The rule in words, e.g. 'LSTM better than every baseline (sum@100)'."""
        return "; and ".join(p.describe() for p in self.parts) + f" ({self.metric})"

    @property
    def margin(self) -> float:
        """The relative margin of its parts (NaN when none has one, or when they differ)."""
        margins = {p.margin for p in self.parts if not math.isnan(p.margin)}
        return margins.pop() if len(margins) == 1 else math.nan


def decide(p_holds: float, p_fails: float, alpha: float = ALPHA) -> str:
    """'holds' if p_holds < alpha, 'does not hold' if p_fails < alpha, else (or if both) 'inconclusive'."""
    holds, fails = p_holds < alpha, p_fails < alpha
    return "holds" if holds and not fails else "does not hold" if fails and not holds else "inconclusive"


def short_number(x: float) -> str:
    """Three significant digits (four from 1,000 up): the precision the intervals support; also the book's tables'."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.4g}"


def _ci_text(ci: CrossedCI) -> str:
    return f"{short_number(ci.mean)} [{short_number(ci.lo)}, {short_number(ci.hi)}]"


@dataclass(frozen=True)
class ClaimData:
    """What a claim is decided on: the LSTM's scored metric per (meta-training seed, task) and each compared
    baseline's per task (``claim_data``). Kept apart from the decision so that a subset of the seeds can be decided
    again (``p_values(rows)``): that is how ``stability`` asks what other meta-training seeds would have said."""

    claim: Claim
    meta_seeds: tuple[int, ...]
    lstm: np.ndarray                   # (S seeds, I tasks), divergence scored
    baselines: dict[str, np.ndarray]   # name -> (I,), averaged over its meta seeds if it has several
    listed: tuple[tuple[str, ...], ...]  # per part of the claim, the baselines it names
    sign: float                        # +1 when lower is better, -1 for accuracy
    failed_runs: dict[str, tuple[int, int]]  # name (LSTM too) -> (diverged runs, runs)
    worst: float                       # the score a diverged run gets
    # competitors run once per meta-training seed of the LSTM (another LSTM, e.g. the MNIST-trained one in the
    # errata): name -> (S, I) in the LSTM's seed order; ``baselines`` holds their mean over seeds
    seeded: dict[str, np.ndarray] = field(default_factory=dict)

    def competitors(self, rows=None) -> dict[str, np.ndarray]:
        """Each compared baseline per task; a seeded one averaged over seeds ``rows`` (default: all, as in the run)."""
        if rows is None:
            return self.baselines
        return {b: self.seeded[b][np.asarray(rows)].mean(axis=0) if b in self.seeded else v
                for b, v in self.baselines.items()}

    def p_values(self, rows=None, competitor_rows=None) -> tuple[float, float]:
        """(p_holds, p_fails) of the claim on seeds ``rows`` (default all; repeats allowed, each counts as a seed).
        ``competitor_rows`` picks the seeds of seeded competitors too (a run made of those seeds); by default they
        stay averaged over all, as in the run (the per-seed verdicts of ``check_claim``)."""
        lstm = self.lstm if rows is None else self.lstm[np.asarray(rows)]
        competitors = self.competitors(competitor_rows)
        # paired differences LSTM - baseline, negative where the LSTM is better
        cis = {b: crossed_mean_ci(self.sign * (lstm - v[None, :])) for b, v in competitors.items()}
        scale = {b: abs(float(v.mean())) for b, v in competitors.items()}  # delta = margin * |baseline's mean|
        ps = []
        for part, names in zip(self.claim.parts, self.listed):
            margin = 0.0 if math.isnan(part.margin) else part.margin
            ps.append(part.p_values({b: cis[b] for b in names}, {b: margin * scale[b] for b in names}))
        return max(p for p, _ in ps), min(1.0, min(p for _, p in ps) * len(ps))


def claim_data(frame: pd.DataFrame, claim: Claim) -> ClaimData:
    """The rows of ``frame`` (``evaluate``/``compare``) that ``claim`` is about, as crossed tables (``ClaimData``).

    A competitor other than the LSTM that carries several meta_seed values is averaged over them per task.
    """
    if claim.setting is None:
        data = frame
    elif "setting" not in frame:
        raise ValueError(f"setting={claim.setting!r} was given but the frame has no setting column")
    else:
        data = frame[frame["setting"] == claim.setting]
    if data.empty:
        raise ValueError(f"setting={claim.setting!r} has no rows in the frame")
    lower_is_better = claim.metric != "accuracy"
    values = per_task_metric(data, claim.metric)
    finite = values["value"].dropna()
    if finite.empty:
        raise ValueError(f"every run diverged within metric={claim.metric!r}; nothing to compare")
    worst = float(finite.max() if lower_is_better else finite.min())
    values["failed"] = values["value"].isna()
    values["scored"] = values["value"].fillna(worst)

    names = list(dict.fromkeys(values["optimizer"]))
    if LSTM_LABEL not in names:
        raise ValueError(f"the frame has no {LSTM_LABEL!r} rows; optimizers: {names}")
    baselines = [n for n in names if n != LSTM_LABEL]
    if not baselines:
        raise ValueError("the frame has no baseline to compare the LSTM with")
    listed = []
    for part in claim.parts:
        for b in part.baselines or ():
            check_choice("baseline", b, baselines)
        listed.append(tuple(part.baselines or baselines))
    compared = list(dict.fromkeys(b for names_ in listed for b in names_))

    tasks = pd.MultiIndex.from_frame(values[["seed", "task"]].drop_duplicates().sort_values(["seed", "task"]))
    own = values[values.optimizer == LSTM_LABEL]
    lstm = own.pivot(index="meta_seed", columns=["seed", "task"], values="scored").reindex(columns=tasks)
    if lstm.isna().any(axis=None):
        raise ValueError("not every LSTM meta-training seed was evaluated on every task (seed, task); "
                         "seeds and tasks must be crossed")
    B, seeded, runs = {}, {}, {LSTM_LABEL: (int(own["failed"].sum()), len(own))}
    for b in compared:
        rows = values[values.optimizer == b]
        per_task = rows.groupby(["seed", "task"])["scored"].mean().reindex(tasks)
        if per_task.isna().any():
            raise ValueError(f"baseline {b!r} was not evaluated on every task of the LSTM")
        B[b] = per_task.to_numpy(dtype=np.float64)
        runs[b] = (int(rows["failed"].sum()), len(rows))
        if rows["meta_seed"].nunique() > 1:
            per_seed = rows.pivot_table(index="meta_seed", columns=["seed", "task"], values="scored").reindex(columns=tasks)
            if list(per_seed.index) == list(lstm.index) and not per_seed.isna().any(axis=None):
                seeded[b] = per_seed.to_numpy(dtype=np.float64)
    return ClaimData(claim, tuple(int(s) for s in lstm.index), lstm.to_numpy(dtype=np.float64), B, tuple(listed),
                     1.0 if lower_is_better else -1.0, runs, worst, seeded)


def check_claim(frame: pd.DataFrame, claim: Claim) -> dict:
    """Decide ``claim`` on ``frame`` (rows of ``evaluate``/``compare``); returns one row of the claims table.

    A competitor other than the LSTM that carries several meta_seed values is averaged over them per task.
    """
    data = claim_data(frame, claim)
    L, B = data.lstm, data.baselines
    n_seeds, n_tasks = L.shape
    p_holds, p_fails = data.p_values()
    verdict = decide(p_holds, p_fails)
    seeds_holding = sum(decide(*data.p_values([s])) == "holds" for s in range(n_seeds))

    lower_is_better = data.sign > 0
    best = (min if lower_is_better else max)(B, key=lambda b: B[b].mean())
    lstm_ci = crossed_mean_ci(L)
    best_ci = crossed_mean_ci(B[best][None, :])
    diff_ci = crossed_mean_ci(L - B[best][None, :])
    failed = data.failed_runs
    diverged = sum(n for n, _ in failed.values())
    counts = ", ".join(f"{name} {n} of {total}" for name, (n, total) in failed.items())
    ours = (f"LSTM {_ci_text(lstm_ci)}; best baseline {best} {_ci_text(best_ci)}; "
            f"paired difference LSTM - {best} {_ci_text(diff_ci)}; {n_seeds} seeds x {n_tasks} tasks; "
            + (f"diverged runs (scored as the worst value, {short_number(data.worst)}): " if diverged
               else "diverged runs: ") + counts)
    return {"experiment": claim.experiment, "setting": claim.setting or "", "claim": claim.claim,
            "thesis": claim.thesis, "source": claim.source, "metric": claim.metric, "test": claim.describe(),
            "ours": ours, "seeds": f"{seeds_holding} of {n_seeds}", "seeds_holding": seeds_holding,
            "n_seeds": n_seeds, "n_tasks": n_tasks, "verdict": verdict, "p_holds": p_holds, "p_fails": p_fails,
            "lstm": lstm_ci.mean, "lstm_lo": lstm_ci.lo, "lstm_hi": lstm_ci.hi, "best_baseline": best,
            "best_baseline_value": best_ci.mean, "difference": diff_ci.mean, "difference_lo": diff_ci.lo,
            "difference_hi": diff_ci.hi, "margin": claim.margin, "diverged_runs": diverged}


def not_run(claim: Claim, reason: str) -> dict:
    """The claims-table row of a claim that could not be tested (e.g. its data set is absent)."""
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update({"experiment": claim.experiment, "setting": claim.setting or "", "claim": claim.claim,
                "thesis": claim.thesis, "source": claim.source, "metric": claim.metric, "test": claim.describe(),
                "ours": reason, "seeds": "", "best_baseline": "", "verdict": "not run"})
    return row


def check_claims(frame: pd.DataFrame, claims: list[Claim], skipped: dict | None = None) -> pd.DataFrame:
    """The claims table for one experiment; ``skipped`` maps settings that were not run to the reason."""
    skipped = skipped or {}
    rows = [not_run(c, skipped[c.setting]) if c.setting in skipped else check_claim(frame, c) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def holm_verdicts(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """``table`` with ``p_holds_holm``, ``p_fails_holm`` (Holm over the rows that have p-values, each column
    on its own) and ``verdict_holm`` from them by the same rule; "not run" rows keep NaN and "not run"."""
    out = table.copy()
    out["p_holds_holm"] = holm(out["p_holds"].to_numpy(dtype=np.float64))
    out["p_fails_holm"] = holm(out["p_fails"].to_numpy(dtype=np.float64))
    tested = out["p_holds_holm"].notna() & out["p_fails_holm"].notna() & (out["verdict"] != "not run")
    out["verdict_holm"] = out["verdict"].where(~tested, [
        decide(h, f, alpha) for h, f in zip(out["p_holds_holm"], out["p_fails_holm"])])
    return out
