"""A run's verdicts as ``stability.VerdictTable``s, decided again as the book decided them: the claims table (Holm
across it) and the errata table (each row alone). Here because this layer knows both the chapters and the errata."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from l2l_core.book.chapters import SETUPS
from l2l_core.book.report import run_claim_data
from l2l_core.book.settings import load_settings
from l2l_core.errata.chapter import emnist_own_claim
from l2l_core.evaluation.claims import ClaimData, claim_data
from l2l_core.evaluation.stability import VerdictTable, claims_table
from l2l_core.io import read_frame


def run_errata_data(results_root: str | Path) -> list[tuple[dict, ClaimData]]:
    """Every verdict of one run's errata table as (label, ``ClaimData``): each row of errata.csv with the defect and
    fixed; an empty list when the run has no errata chapter."""
    folder = Path(results_root) / "08_errata"
    if not (folder / "errata.csv").is_file():
        return []
    s = load_settings(folder)
    claims = {(c.experiment, c.setting or "", c.claim): c for setup in SETUPS.values() for c in setup(s)[1]}
    own = emnist_own_claim(s)
    claims[(own.experiment, own.setting, own.claim)] = own
    frames, out = {}, []
    for row in pd.read_csv(folder / "errata.csv").fillna("").itertuples(index=False):
        letter = row.defect[1]
        if letter not in frames:
            frames[letter] = read_frame(folder / f"losses_{letter}.parquet")
        frame = frames[letter]
        claim = claims[(row.experiment, row.setting, row.claim)].capped(s.steps)
        for variant in ("with defect", "fixed"):
            label = {"part": f"errata {row.defect[:3]}", "experiment": row.experiment, "setting": row.setting,
                     "claim": row.claim, "variant": variant}
            out.append((label, claim_data(frame[frame["variant"] == variant], claim)))
    return out


def run_verdict_tables(results_root: str | Path) -> list[VerdictTable]:
    """One run's verdicts decided as the book decides them: the claims table (Holm across it) and, where the run has
    one, the errata table (each row alone)."""
    tables = [claims_table(run_claim_data(results_root))]
    errata = run_errata_data(results_root)
    if errata:
        tables.append(VerdictTable("errata", tuple(d for _, d in errata), tuple(l for l, _ in errata), holm=False))
    return tables
