"""Claim checks: a thesis claim next to what our runs show, decided by pre-registered rules (the method page's
specification, ``RULES``).

Every LSTM meta-trained from seed s runs on the same held-out tasks i as the baselines. A claim is a conjunction of
``Part``s; each part states something about the LSTM against named baselines, and against each baseline it is a
statement about the relative effect theta = sign * E[L - B] / E[B] (a fraction of the baseline's mean; negative:
the LSTM better) and a threshold: "better" theta < 0, "wide_margin" theta < -10%, "no_advantage" theta > -5%,
"negligible" |theta| < 5%, "worse" theta > 0. Each statement is tested as the per-run contrast
sign * (L - B) + a * B against 0 (``effects.contrast_p``), seeds and tasks crossed (``stats.crossed_mean_ci``), so the
margin's own uncertainty is counted. A sign claim ("better", "worse") also has a pre-registered smallest effect of
interest ``SESOI``: it does not hold when the LSTM is shown to be less than 2.5% better (a tie comes out *does not
hold* given enough seeds, not inconclusive for ever).

Each claim gets p_holds (H1: the claim is true) and p_fails (H1: it is false); the verdict at ``ALPHA`` = 0.025 per
direction is "holds", "does not hold" or "inconclusive". Holm adjusts them across a family of claims
(``holm_verdicts``): the thesis' claims are one family; contrasts the book adds (chapter 02's PyTorch
initialisation) are another. Each row also carries the claim's signed distance to its threshold (positive on the
side the claim states), its three intervals (``effects``), every named baseline's effect, each seed's estimate, and
whether it is *near threshold* (distance within ``NEAR`` of it); ``repeatability`` adds how often an independent
run would repeat the verdict and how many seeds would make it repeat.

A run whose metric is NaN (it diverged within the metric's window) is scored as the worst finite value
of that metric in the setting (largest loss, smallest accuracy) and counted, instead of being dropped:
dropping would remove exactly the tasks on which an optimizer fails.

Over 300 lines on purpose: these rules are one statistical procedure, read together beside the method page.

Over 300 lines on purpose: this module is the method page's verdict rules in code (the claim, its statements, the
decision, Holm), fixed before the reference run's results were read; kept whole so that the rules are audited in
one file and their history is one file's log.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from l2l_core.checks import check_choice
from l2l_core.evaluation.evaluate import LSTM_LABEL, with_meta_seed
from l2l_core.evaluation.effects import Effect, contrast_p, relative_effect, sign_flip_p
from l2l_core.evaluation.stats import CrossedCI, crossed_mean_ci, holm

VERDICTS = ("holds", "does not hold", "inconclusive", "not run")
KINDS = ("better", "worse", "negligible", "wide_margin", "no_advantage")
ALPHA = 0.025  # per direction: matches the 95% two-sided intervals shown in the rows
_LEGACY_KINDS = {"lstm_wins": "better", "lstm_fails": "worse", "no_lstm_advantage": "no_advantage"}
FAMILIES = ("thesis", "contrast")  # Holm runs within each: the thesis' claims, and the contrasts the book adds

# Relative margins, as a fraction of the baseline's mean metric (for sum@100: of its summed loss).
MARGINS = {
    # "the LSTM and the baseline are about equal": the difference lies within +-5% (TOST equivalence test)
    "negligible": 0.05,
    # "the LSTM wins by a wide margin": at least 10% lower summed loss than each listed baseline
    "wide_margin": 0.10,
    # "no advantage for the LSTM": against at least one listed baseline the LSTM is not better by more than 5%
    # (non-superiority); a 5% edge is what a reader would not call an advantage
    "no_advantage": 0.05,
}
# Smallest effect of interest of a sign claim ("better", "worse"): an edge under 2.5% of the baseline's mean is half
# of what the thesis itself calls negligible (5%, notebook cell 41), so "beats" does not hold when the LSTM is shown
# to be less than 2.5% better. Without it a tie stays inconclusive at any number of seeds.
SESOI = 0.025
# Near threshold: a claim whose estimated distance to its threshold is under 2.5 points of the baseline's mean is
# printed as near threshold, beside its verdict and its repeatability: such a verdict turns on the draw of seeds.
NEAR = 0.025
# Per kind: the statements (offset a, below) a part makes against one baseline, for "holds" (all must hold) and for
# "does not hold" (any one suffices); sign * (L - B) + a * B < 0 (below) or > 0. ``FAIL_GAP``: how far past the
# holds threshold the fails threshold lies, in distance units (the smallest effect of interest of a sign claim).
TESTS = {
    "better": ([(0.0, True)], [(SESOI, False)]),
    "worse": ([(0.0, False)], [(-SESOI, True)]),
    "wide_margin": ([(MARGINS["wide_margin"], True)], [(MARGINS["wide_margin"], False)]),
    "no_advantage": ([(MARGINS["no_advantage"], False)], [(MARGINS["no_advantage"], True)]),
    "negligible": ([(-MARGINS["negligible"], True), (MARGINS["negligible"], False)],
                   [(-MARGINS["negligible"], False), (MARGINS["negligible"], True)]),
}
FAIL_GAP = {"better": SESOI, "worse": SESOI, "wide_margin": 0.0, "no_advantage": 0.0, "negligible": 0.0}
RULES = dict(alpha=ALPHA, sesoi=SESOI, near=NEAR, margins=MARGINS, families=FAMILIES)

COLUMNS = ["experiment", "setting", "claim", "thesis", "source", "family", "metric", "test", "ours", "n_seeds",
           "n_tasks", "verdict", "p_holds", "p_fails", "distance", "distance_lo", "distance_hi", "distance_se",
           "distance_df", "seed_lo", "seed_hi", "reml_lo", "reml_hi", "reml_verdict", "sign_flip_p",
           "near_threshold", "fail_gap", "binding", "per_baseline", "per_seed", "sigma_seed", "sigma_task",
           "sigma_error", "lstm", "lstm_lo", "lstm_hi", "best_baseline", "best_baseline_value", "difference",
           "difference_lo", "difference_hi", "margin", "diverged_runs"]


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

    @property
    def any_baseline(self) -> bool:
        """Whether the part needs only one of its baselines (``no_advantage``) rather than every one."""
        return self.kind == "no_advantage"

    def p_values(self, lstm: np.ndarray, baselines: dict[str, np.ndarray], sign: float) -> tuple[float, float]:
        """(p_holds, p_fails) of this part: per baseline the largest p of its holds statements and Bonferroni over
        its fails statements; over baselines an intersection-union test (max) where every one is needed, and
        Bonferroni (min * n) where any one suffices, the other way round for fails."""
        holds_tests, fails_tests = TESTS[self.kind]
        holds, fails = [], []
        for b in baselines.values():
            holds.append(max(contrast_p(lstm, b, sign, a, below) for a, below in holds_tests))
            fails.append(min(1.0, len(fails_tests) * min(contrast_p(lstm, b, sign, a, below) for a, below in fails_tests)))
        n = len(holds)
        if self.any_baseline:
            return min(1.0, min(holds) * n), max(fails)
        return max(holds), min(1.0, min(fails) * n)

    def effects(self, lstm: np.ndarray, baselines: dict[str, np.ndarray], sign: float) -> list[Effect]:
        """Per named baseline, the ``Effect`` nearest its threshold among the part's holds statements."""
        out = []
        for name, b in baselines.items():
            candidates = [relative_effect(lstm, b, sign, a, below, name) for a, below in TESTS[self.kind][0]]
            out.append(min(candidates, key=lambda e: e.distance))
        return out


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
    family: str = "thesis"

    def __post_init__(self):
        _parse_metric(self.metric)
        check_choice("family", self.family, FAMILIES)
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
    """'holds' if p_holds < alpha, else 'does not hold' if p_fails < alpha, else 'inconclusive'.

    Both reject only for a sign claim shown to lie between its threshold and its smallest effect of interest (the
    LSTM better, by less than ``SESOI``): the claim as worded holds, and its row is near threshold."""
    if p_holds < alpha:
        return "holds"
    return "does not hold" if p_fails < alpha else "inconclusive"


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
        stay averaged over all, as in the run."""
        lstm = self.lstm if rows is None else self.lstm[np.asarray(rows)]
        competitors = self.competitors(competitor_rows)
        ps = [part.p_values(lstm, {b: competitors[b] for b in names}, self.sign)
              for part, names in zip(self.claim.parts, self.listed)]
        return max(p for p, _ in ps), min(1.0, min(p for _, p in ps) * len(ps))

    def assess(self, rows=None, competitor_rows=None) -> "Assessment":
        """The claim's effects on seeds ``rows``: every part's effect against each named baseline, the claim's
        distance to its threshold (the binding effect's), and each seed's distance."""
        lstm = self.lstm if rows is None else self.lstm[np.asarray(rows)]
        competitors = self.competitors(competitor_rows)
        parts = [(part, part.effects(lstm, {b: competitors[b] for b in names}, self.sign))
                 for part, names in zip(self.claim.parts, self.listed)]

        bindings = [(part, (max if part.any_baseline else min)(effects, key=lambda e: e.distance))
                    for part, effects in parts]
        part, binding = min(bindings, key=lambda pb: pb[1].distance)
        per_seed = tuple(min((max if p.any_baseline else min)(_seed_distance(e, s) for e in effects)
                             for p, effects in parts) for s in range(lstm.shape[0]))
        return Assessment(parts, binding, FAIL_GAP[part.kind], per_seed)


def _seed_distance(effect: Effect, seed: int) -> float:
    theta = effect.per_seed[seed]
    return effect.threshold - theta if effect.below else theta - effect.threshold


@dataclass(frozen=True)
class Assessment:
    """A claim's effects (``ClaimData.assess``): per part its effect against each named baseline, the binding
    effect (nearest the claim's threshold), the fails threshold's gap past it, and each seed's distance."""

    parts: list            # [(Part, [Effect per named baseline])]
    binding: Effect
    fail_gap: float
    per_seed: tuple[float, ...]

    @property
    def distance(self) -> float:
        return self.binding.distance

    def interval(self, ci: CrossedCI) -> tuple[float, float]:
        """An interval of theta as one of the distance (oriented as ``distance``)."""
        b = self.binding
        return (b.threshold - ci.hi, b.threshold - ci.lo) if b.below else (ci.lo - b.threshold, ci.hi - b.threshold)

    def baselines_text(self) -> str:
        """Every named baseline's theta with its crossed interval, e.g. 'NAG +3.1% [1.2, 5.0]; SGD -8%'."""
        return "; ".join(f"{e.baseline} {e.theta:+.1%} [{e.crossed.lo:+.1%}, {e.crossed.hi:+.1%}]"
                         for _, effects in self.parts for e in effects)


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
    return claim_row(claim_data(frame, claim))


def claim_row(data: ClaimData) -> dict:
    """The claims-table row of ``data``: verdict, distance to the threshold with its three intervals, near
    threshold, every named baseline's effect, each seed's distance, and the binding effect's variance components."""
    claim, L, B = data.claim, data.lstm, data.baselines
    n_seeds, n_tasks = L.shape
    p_holds, p_fails = data.p_values()
    verdict = decide(p_holds, p_fails)
    a = data.assess()
    b = a.binding
    crossed, seed, reml = (a.interval(ci) for ci in (b.crossed, b.seed_cluster, b.reml))
    # the REML cross-check of the binding statement, one-sided at ALPHA as the verdict
    t_reml = float(stats.t.ppf(1 - ALPHA, b.reml.df)) * b.reml.se if b.reml.df > 0 else 0.0
    reml_verdict = ("holds" if a.distance - t_reml > 0 else "does not hold" if a.distance + t_reml < a.fail_gap
                    else "inconclusive")
    flips = sign_flip_p(a.per_seed, below=False) if n_seeds <= 16 else math.nan

    lower_is_better = data.sign > 0
    best = (min if lower_is_better else max)(B, key=lambda k: B[k].mean())
    lstm_ci = crossed_mean_ci(L)
    best_ci = crossed_mean_ci(B[best][None, :])
    diff_ci = crossed_mean_ci(L - B[best][None, :])
    failed = data.failed_runs
    diverged = sum(n for n, _ in failed.values())
    counts = ", ".join(f"{name} {n} of {total}" for name, (n, total) in failed.items())
    ours = (f"distance to threshold {a.distance:+.1%} [{crossed[0]:+.1%}, {crossed[1]:+.1%}] (vs {b.baseline}); "
            f"effect per baseline: {a.baselines_text()}; LSTM {_ci_text(lstm_ci)}; {n_seeds} seeds x {n_tasks} tasks; "
            + (f"diverged runs (scored as the worst value, {short_number(data.worst)}): " if diverged
               else "diverged runs: ") + counts)
    comp = b.components
    return {"experiment": claim.experiment, "setting": claim.setting or "", "claim": claim.claim,
            "thesis": claim.thesis, "source": claim.source, "family": claim.family, "metric": claim.metric,
            "test": claim.describe(), "ours": ours, "n_seeds": n_seeds, "n_tasks": n_tasks, "verdict": verdict,
            "p_holds": p_holds, "p_fails": p_fails, "distance": a.distance, "distance_lo": crossed[0],
            "distance_hi": crossed[1], "distance_se": b.crossed.se, "distance_df": b.crossed.df,
            "seed_lo": seed[0], "seed_hi": seed[1], "reml_lo": reml[0], "reml_hi": reml[1],
            "reml_verdict": reml_verdict, "sign_flip_p": flips, "near_threshold": abs(a.distance) < NEAR,
            "fail_gap": a.fail_gap, "binding": b.baseline, "per_baseline": a.baselines_text(),
            "per_seed": json.dumps([round(x, 5) for x in a.per_seed]),
            "sigma_seed": math.sqrt(comp.seed), "sigma_task": math.sqrt(comp.task), "sigma_error": math.sqrt(comp.error),
            "lstm": lstm_ci.mean, "lstm_lo": lstm_ci.lo, "lstm_hi": lstm_ci.hi, "best_baseline": best,
            "best_baseline_value": best_ci.mean, "difference": diff_ci.mean, "difference_lo": diff_ci.lo,
            "difference_hi": diff_ci.hi, "margin": claim.margin, "diverged_runs": diverged}


def not_run(claim: Claim, reason: str) -> dict:
    """The claims-table row of a claim that could not be tested (e.g. its data set is absent)."""
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update({"experiment": claim.experiment, "setting": claim.setting or "", "claim": claim.claim,
                "thesis": claim.thesis, "source": claim.source, "family": claim.family, "metric": claim.metric,
                "test": claim.describe(), "ours": reason, "best_baseline": "", "binding": "", "per_baseline": "",
                "per_seed": "[]", "reml_verdict": "", "near_threshold": False, "verdict": "not run"})
    return row


def check_claims(frame: pd.DataFrame, claims: list[Claim], skipped: dict | None = None) -> pd.DataFrame:
    """The claims table for one experiment; ``skipped`` maps settings that were not run to the reason."""
    skipped = skipped or {}
    rows = [not_run(c, skipped[c.setting]) if c.setting in skipped else check_claim(frame, c) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def holm_verdicts(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """``table`` with ``p_holds_holm``, ``p_fails_holm`` (Holm over the tested rows of each ``family``, each
    direction on its own), ``verdict_holm`` from them by the same rule, ``family_size`` (the m of its family) and
    the distance's Bonferroni-adjusted interval ``adjusted_lo``/``adjusted_hi`` (level 1 - 2 alpha / m: an adjusted
    interval clear of the threshold implies the Holm decision; Holm can also decide claims whose adjusted interval
    touches it). "not run" rows keep NaN and "not run"."""
    out = table.copy()
    out["family"] = out["family"].fillna("thesis") if "family" in out else "thesis"
    out["p_holds_holm"] = np.nan
    out["p_fails_holm"] = np.nan
    out["family_size"] = 0
    tested = out["p_holds"].notna() & out["p_fails"].notna() & (out.get("verdict", "") != "not run")
    for _, rows in out[tested].groupby("family", sort=False):
        out.loc[rows.index, "p_holds_holm"] = holm(rows["p_holds"].to_numpy(dtype=np.float64))
        out.loc[rows.index, "p_fails_holm"] = holm(rows["p_fails"].to_numpy(dtype=np.float64))
        out.loc[rows.index, "family_size"] = len(rows)
    out["verdict_holm"] = out["verdict"].where(~tested, [
        decide(h, f, alpha) for h, f in zip(out["p_holds_holm"], out["p_fails_holm"])])
    if "distance_se" in out:
        df = pd.to_numeric(out["distance_df"], errors="coerce")
        crit = [float(stats.t.ppf(1 - alpha / m, d)) if m and d > 0 else math.nan for m, d in zip(out["family_size"], df)]
        distance, se = pd.to_numeric(out["distance"], errors="coerce"), pd.to_numeric(out["distance_se"], errors="coerce")
        out["adjusted_lo"] = distance - np.asarray(crit) * se
        out["adjusted_hi"] = distance + np.asarray(crit) * se
    return out
