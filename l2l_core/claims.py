"""Claim checks: a thesis claim next to what our runs show, decided by paired 95% confidence intervals.

All optimizers are evaluated on the same tasks and minibatches, so each (seed, task) gives a paired
difference LSTM - baseline. Kinds of claim:

- ``lstm_wins``: holds when every baseline's difference CI lies on the LSTM's side of zero, does not
  hold when some baseline's lies on the other side, inconclusive otherwise;
- ``lstm_fails``: holds when some baseline is significantly better, does not hold when the LSTM is
  significantly better than all, inconclusive otherwise;
- ``no_lstm_advantage``: holds unless the LSTM is significantly better than every baseline.

``baseline`` restricts the comparison to one named baseline (e.g. "NAG overtakes the LSTM").
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from .checks import check_choice
from .evaluate import LSTM_LABEL, mean_ci

VERDICTS = ("holds", "does not hold", "inconclusive", "not run")
KINDS = ("lstm_wins", "lstm_fails", "no_lstm_advantage")


def per_task_metric(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One value per (optimizer, seed, task): 'sum@K' (loss summed over steps 0..K-1), 'loss@K', or 'accuracy'."""
    keys = ["optimizer", "seed", "task"]
    if "diverged" in frame:  # a diverged task has no value; check_claim then drops its pair
        frame = frame[~frame["diverged"]]
    if metric == "accuracy":
        return frame.groupby(keys, sort=False)["final_accuracy"].first().rename("value").reset_index()
    kind, _, k = metric.partition("@")
    if kind not in ("sum", "loss") or not k.isdigit():
        raise ValueError(f"metric={metric!r} is not allowed; use 'sum@K', 'loss@K' or 'accuracy'")
    k = int(k)
    if frame["step"].max() < k:
        raise ValueError(f"metric={metric!r} needs step {k}, but the run stops at step {frame['step'].max()}")
    part = frame[frame.step < k] if kind == "sum" else frame[frame.step == k]
    agg = "sum" if kind == "sum" else "first"
    return part.groupby(keys, sort=False)["loss"].agg(agg).rename("value").reset_index()


@dataclass(frozen=True)
class Claim:
    """A claim of the thesis about one experiment (and optionally one ``setting`` of its frame)."""

    experiment: str
    claim: str
    thesis: str
    kind: str = "lstm_wins"
    metric: str = "sum@100"
    setting: str | None = None
    baseline: str | None = None

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)

    def capped(self, steps: int) -> "Claim":
        """The same claim on a run of only ``steps`` steps (smoke runs): 'sum@100' becomes 'sum@steps'."""
        kind, _, k = self.metric.partition("@")
        if k.isdigit() and int(k) > steps:
            return replace(self, metric=f"{kind}@{steps}")
        return self


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.4g}"


def check_claim(frame: pd.DataFrame, claim: Claim) -> dict:
    """Decide ``claim`` on ``frame`` (rows of ``evaluate``/``compare``); returns one row of the claims table."""
    data = frame if claim.setting is None else frame[frame["setting"] == claim.setting]
    if data.empty:
        raise ValueError(f"setting={claim.setting!r} has no rows in the frame")
    values = per_task_metric(data, claim.metric).pivot_table(index=["seed", "task"], columns="optimizer",
                                                             values="value")
    n_pairs = data[["seed", "task"]].drop_duplicates().shape[0]
    values = values.dropna()  # pairs where some optimizer diverged
    dropped = n_pairs - len(values)
    baselines = [c for c in values.columns if c != LSTM_LABEL]
    if claim.baseline is not None:
        check_choice("baseline", claim.baseline, baselines)
        baselines = [claim.baseline]
    means = {name: mean_ci(values[name]) for name in values.columns}
    lower_is_better = claim.metric != "accuracy"
    sign = 1 if lower_is_better else -1
    diffs = {b: mean_ci(sign * (values[LSTM_LABEL] - values[b])) for b in baselines}  # < 0: LSTM better
    lstm_better_all = all(hi < 0 for _, _, hi in diffs.values())
    some_baseline_better = any(lo > 0 for _, lo, _ in diffs.values())
    if claim.kind == "lstm_wins":
        verdict = "holds" if lstm_better_all else "does not hold" if some_baseline_better else "inconclusive"
    elif claim.kind == "lstm_fails":
        verdict = "holds" if some_baseline_better else "does not hold" if lstm_better_all else "inconclusive"
    else:
        verdict = "does not hold" if lstm_better_all else "holds"
    best = (min if lower_is_better else max)(baselines, key=lambda b: means[b][0])
    m, lo, hi = means[LSTM_LABEL]
    bm, blo, bhi = means[best]
    d, dlo, dhi = diffs[best]
    ours = (f"LSTM {_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]; best baseline {best} {_fmt(bm)} [{_fmt(blo)}, {_fmt(bhi)}]; "
            f"paired difference {_fmt(sign * d)} [{_fmt(sign * (dlo if sign > 0 else dhi))}, "
            f"{_fmt(sign * (dhi if sign > 0 else dlo))}] (n={len(values)}"
            + (f"; {dropped} tasks left out because an optimizer diverged)" if dropped else ")"))
    return {"experiment": claim.experiment, "setting": claim.setting or "", "claim": claim.claim,
            "thesis": claim.thesis, "metric": claim.metric, "ours": ours, "verdict": verdict,
            "lstm": m, "best_baseline": best, "best_baseline_value": bm, "difference": sign * d,
            "difference_lo": sign * (dlo if sign > 0 else dhi), "difference_hi": sign * (dhi if sign > 0 else dlo),
            "pairs_left_out": dropped}


def not_run(claim: Claim, reason: str) -> dict:
    """The claims-table row of a claim that could not be tested (e.g. its data set is absent)."""
    return {"experiment": claim.experiment, "setting": claim.setting or "", "claim": claim.claim,
            "thesis": claim.thesis, "metric": claim.metric, "ours": reason, "verdict": "not run"}


def check_claims(frame: pd.DataFrame, claims: list[Claim], skipped: dict | None = None) -> pd.DataFrame:
    """The claims table for one experiment; ``skipped`` maps settings that were not run to the reason."""
    skipped = skipped or {}
    return pd.DataFrame([not_run(c, skipped[c.setting]) if c.setting in skipped else check_claim(frame, c)
                         for c in claims])
