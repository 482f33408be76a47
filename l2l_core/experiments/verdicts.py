"""A run's verdicts as ``stability.VerdictTable``s, decided again as the book decided them: the claims table (Holm
across it) and the errata table (each row alone). Here because this layer knows both the chapters and the errata."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from l2l_core.experiments.registry import SETUPS
from l2l_core.experiments.settings import load_settings
from l2l_core.experiments.errata import emnist_own_claim
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


def run_claim_data(results_root: str | Path) -> list:
    """Every tested claim of one run as ``claims.ClaimData`` (what its verdict is decided on), in the book's order:
    each experiment chapter's claims from its settings and losses; claims on a setting the run skipped are left out."""
    root = Path(results_root)
    data = []
    for chapter, setup in SETUPS.items():
        folder = root / chapter
        if not (folder / "losses.parquet").is_file():
            continue
        frame = read_frame(folder / "losses.parquet")
        present = set(frame["setting"]) if "setting" in frame else None
        s = load_settings(folder)
        for claim in setup(s)[1]:
            if present is None or claim.setting is None or claim.setting in present:
                data.append(claim_data(frame, claim.capped(s.steps)))  # as the chapter decided it (Experiment.result)
    if not data:
        raise FileNotFoundError(f"results_root={str(results_root)!r} holds no experiment chapter's losses.parquet")
    return data
