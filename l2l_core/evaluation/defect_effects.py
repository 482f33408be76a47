"""A defect's effect on a claim, tested as the paired contrast between its two arms (with the defect, fixed).

"The defect changes the verdict" compared two verdicts, and a difference between significant and not significant
is not itself significant. Both arms run on the same held-out tasks, and their LSTMs come from the same
meta-training seeds, so the defect's effect on the claim's distance to its threshold is estimated per run:
Delta_si = d_si(with defect) - d_si(fixed), on the statement that binds the claim in the fixed arm, and tested
two-sided against 0 with the crossed interval; Holm across the errata table (``holm_effects``). Outcomes: "changes
it" (Holm p < 2 alpha), "within +-NEAR" (both one-sided tests that |Delta| < NEAR reject: an equivalence), or
"inconclusive".
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from l2l_core.evaluation.claims import ALPHA, NEAR, ClaimData
from l2l_core.evaluation.stats import crossed_mean_ci, holm

OUTCOMES = ("changes it", f"within ±{NEAR:.1%}", "inconclusive")


def _distance_table(data: ClaimData, baseline: str, offset: float, below: bool, scale: float) -> np.ndarray:
    """Per run (seed x task), the distance of ``data``'s LSTM to the statement's threshold, in units of ``scale``."""
    B = data.competitors()[baseline]
    B = np.broadcast_to(B, data.lstm.shape)
    contrast = data.sign * (data.lstm - B) + offset * B
    return (-contrast if below else contrast) / scale


def defect_effect(with_defect: ClaimData, fixed: ClaimData) -> dict:
    """The defect's effect on the claim's distance (``Delta``, its crossed interval and two-sided p), paired by seed
    and task. The arms must be the same claim on the same seeds and tasks."""
    if with_defect.claim.claim != fixed.claim.claim or with_defect.meta_seeds != fixed.meta_seeds:
        raise ValueError(f"the arms differ: claims {with_defect.claim.claim!r} / {fixed.claim.claim!r}, seeds "
                         f"{with_defect.meta_seeds} / {fixed.meta_seeds}; pair the same claim on the same seeds")
    if with_defect.lstm.shape != fixed.lstm.shape:
        raise ValueError(f"the arms have {with_defect.lstm.shape} and {fixed.lstm.shape} runs; they must share tasks")
    assessment = fixed.assess()
    binding = assessment.binding
    offset = -binding.threshold
    scale = float(np.broadcast_to(fixed.competitors()[binding.baseline], fixed.lstm.shape).mean())
    delta = (_distance_table(with_defect, binding.baseline, offset, binding.below, scale)
             - _distance_table(fixed, binding.baseline, offset, binding.below, scale))
    ci = crossed_mean_ci(delta)
    p_two = min(1.0, 2 * min(ci.p_below(0.0), ci.p_above(0.0)))
    p_equivalent = max(ci.p_below(NEAR), ci.p_above(-NEAR))
    return {"binding": binding.baseline, "delta": ci.mean, "delta_lo": ci.lo, "delta_hi": ci.hi, "delta_se": ci.se,
            "delta_df": ci.df, "p_effect": p_two, "p_equivalent": p_equivalent}


def holm_effects(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """``table`` (rows of ``defect_effect``) with Holm across its rows, for the effect (two-sided, level 2 alpha)
    and for equivalence (level alpha), and each row's outcome (``OUTCOMES``)."""
    out = table.copy()
    tested = out["p_effect"].notna()
    out["p_effect_holm"] = math.nan
    out["p_equivalent_holm"] = math.nan
    out.loc[tested, "p_effect_holm"] = holm(out.loc[tested, "p_effect"].to_numpy(dtype=np.float64))
    out.loc[tested, "p_equivalent_holm"] = holm(out.loc[tested, "p_equivalent"].to_numpy(dtype=np.float64))
    out["effect"] = [
        "not run" if not ok else OUTCOMES[0] if pe < 2 * alpha else OUTCOMES[1] if pq < alpha else OUTCOMES[2]
        for ok, pe, pq in zip(tested, out["p_effect_holm"], out["p_equivalent_holm"])]
    return out
