"""How stable each verdict is under float rounding and other meta-training seeds: the book's verdicts decided again
on recombinations of the LSTMs that two runs trained.

Two runs that differ only in float rounding train, from each seed, two versions of its LSTM: mostly as different
as two seeds' (meta-training is chaotic), sometimes close (where rounding barely moves meta-training). Pooling both
runs' LSTMs (the baselines and held-out tasks are the same) gives 2S per claim, and

- ``rounding_agreement`` gives each seed's two versions to two runs in every way (2^(S-1) pairs) and decides both as
  the book decides a run: how often a rounding pair agrees, the pair that ran being one of these;
- ``split_agreement`` decides every split of the 2S into two runs of S: how often two runs with other seeds agree
  (it treats a seed's two versions as independent, which they are not where rounding barely moves the LSTM);
- ``resampled_agreement`` draws two runs of n seeds with replacement from the 2S (a seed bootstrap), for n beyond S:
  how agreement would grow with more seeds. Rough by construction: 2S LSTMs stand for the population of seeds.

Every recombination takes the same seed rows in every claim, as a run does: one MNIST LSTM per seed serves chapters
02-06. The claims table is decided under Holm, errata rows alone (``VerdictTable``), as the book does.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from l2l_core.checks import check_int, check_seed
from l2l_core.evaluation.claims import ClaimData, decide, holm_verdicts

SHOWN = ("holds", "inconclusive", "does not hold")


def pool_runs(runs: list[list[ClaimData]]) -> list[ClaimData]:
    """One ``ClaimData`` per claim with the LSTM rows of every run stacked in run order (run 0's seeds first).

    The runs must state the same claims in the same order on the same tasks and seeds; their baselines should be the
    same runs (within one machine they are bit for bit, the kernels only touch the LSTM): the first run's are used,
    and ``baseline_gap`` says how far the others' are from them. Seeded competitors are stacked like the LSTM.
    """
    if len(runs) < 2:
        raise ValueError(f"runs has {len(runs)} run(s); pooling needs at least two")
    first = runs[0]
    for k, run in enumerate(runs[1:], start=1):
        keys = [(d.claim.experiment, d.claim.setting, d.claim.claim) for d in run]
        if keys != [(d.claim.experiment, d.claim.setting, d.claim.claim) for d in first]:
            raise ValueError(f"run {k} states other claims than run 0 (or in another order); compare runs of one profile")
        for a, b in zip(first, run):
            if a.meta_seeds != b.meta_seeds:
                raise ValueError(f"claim {a.claim.claim!r}: run {k} has meta seeds {b.meta_seeds}, run 0 {a.meta_seeds}; "
                                 "pool runs of the same seeds")
            if a.lstm.shape[1] != b.lstm.shape[1]:
                raise ValueError(f"claim {a.claim.claim!r}: run {k} has {b.lstm.shape[1]} tasks, run 0 {a.lstm.shape[1]}")
    return [replace(parts[0], meta_seeds=tuple(range(sum(len(p.meta_seeds) for p in parts))),
                    lstm=np.concatenate([p.lstm for p in parts]),
                    seeded={b: np.concatenate([p.seeded[b] for p in parts]) for b in parts[0].seeded})
            for parts in zip(*runs)]


def pool_tables(runs: list[list["VerdictTable"]]) -> list["VerdictTable"]:
    """Each table of the runs (same tables in the same order) with its claims' LSTMs pooled (``pool_runs``)."""
    if len({tuple(t.name for t in run) for run in runs}) != 1:
        raise ValueError("the runs hold other tables (or in another order); compare runs of one profile")
    return [replace(tables[0], data=tuple(pool_runs([list(t.data) for t in tables]))) for tables in zip(*runs)]


def baseline_gap(runs: list[list[ClaimData]]) -> float:
    """The largest relative difference between any run's baseline scores and run 0's (0.0: the same runs); seeded
    competitors (another LSTM) are pooled like the LSTM and not compared."""
    gap = 0.0
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            for name, values in a.baselines.items():
                if name in a.seeded:
                    continue
                other = b.baselines[name]
                gap = max(gap, float(np.max(np.abs(other - values) / np.maximum(np.abs(values), 1e-30))))
    return gap


LABELS = ("part", "experiment", "setting", "claim", "variant")  # the columns naming a verdict


@dataclass(frozen=True)
class VerdictTable:
    """Verdicts decided together (``name``): one ``ClaimData`` and one label (``LABELS`` -> text) per row, and
    whether Holm adjusts across the table (the book's claims table) or each row is decided alone (the errata rows)."""

    name: str
    data: tuple[ClaimData, ...]
    labels: tuple[dict, ...]
    holm: bool = True

    def __post_init__(self):
        if len(self.data) != len(self.labels) or not self.data:
            raise ValueError(f"table {self.name!r} needs one label per claim and at least one claim "
                             f"(got {len(self.data)} claims, {len(self.labels)} labels)")
        for label in self.labels:
            if set(label) != set(LABELS):
                raise ValueError(f"table {self.name!r}: label {label!r} must name exactly {LABELS}")

    def verdicts(self, rows) -> list[str]:
        """Each row's verdict on seed ``rows``, as the book decides this table."""
        ps = [d.p_values(rows, competitor_rows=rows) for d in self.data]  # a run of these seeds, competitors too
        if not self.holm:
            return [decide(h, f) for h, f in ps]
        table = pd.DataFrame({"p_holds": [p for p, _ in ps], "p_fails": [f for _, f in ps], "verdict": ""})
        return list(holm_verdicts(table)["verdict_holm"])


def claims_table(data: list[ClaimData], part: str = "claims") -> VerdictTable:
    """The book's claims table (Holm across it), labelled by experiment, setting and claim."""
    return VerdictTable(part, tuple(data), tuple({"part": part, "experiment": d.claim.experiment, "variant": "",
                                                  "setting": d.claim.setting or "", "claim": d.claim.claim} for d in data))


def verdicts(tables: list[VerdictTable], rows) -> list[str]:
    """Every row's verdict of every table on seed ``rows``, tables in order."""
    return [v for table in tables for v in table.verdicts(rows)]


def _seed_count(tables: list[VerdictTable]) -> int:
    counts = {d.lstm.shape[0] for table in tables for d in table.data}
    if len(counts) != 1:
        raise ValueError(f"the claims have different numbers of LSTMs ({sorted(counts)}); pool runs of one profile")
    return counts.pop()


def _summary(tables: list[VerdictTable], pairs: list[tuple[list[str], list[str]]], label: str) -> pd.DataFrame:
    """Per row: how often the two runs of each pair agree, and how often each verdict comes out; ``attrs``: the share
    of pairs agreeing on every row of each table and of all tables."""
    rows, k = [], 0
    for table in tables:
        for labels in table.labels:
            a = [va[k] for va, _ in pairs]
            b = [vb[k] for _, vb in pairs]
            outcomes = pd.Series(a + b).value_counts(normalize=True)
            rows.append({**{key: labels[key] for key in LABELS},
                         f"agree ({label})": float(np.mean([x == y for x, y in zip(a, b)])),
                         **{f"{v} ({label})": float(outcomes.get(v, 0.0)) for v in SHOWN}})
            k += 1
    frame = pd.DataFrame(rows)
    bounds = np.cumsum([0] + [len(t.data) for t in tables])
    frame.attrs["all agree"] = {t.name: float(np.mean([va[lo:hi] == vb[lo:hi] for va, vb in pairs]))
                                for t, lo, hi in zip(tables, bounds[:-1], bounds[1:])}
    if len(tables) > 1:
        frame.attrs["all agree"]["every verdict"] = float(np.mean([va == vb for va, vb in pairs]))
    frame.attrs["pairs"] = len(pairs)
    return frame


def rounding_agreement(tables: list[VerdictTable]) -> pd.DataFrame:
    """Two runs' LSTMs pooled (run 0's S seeds, then run 1's in the same order): every way of giving each seed's two
    versions to two runs (each unordered pair once, 2^(S-1)) decided like a rounding pair; the pair that ran is one
    of them. Unlike ``split_agreement`` it keeps whatever a seed's two versions share. Per row the share of pairs
    that agree and of runs giving each verdict; ``attrs`` as in ``split_agreement``."""
    total = _seed_count(tables)
    if total % 2 or total < 4:
        raise ValueError(f"the pooled claims have {total} LSTMs each; pool exactly two runs of at least 2 seeds")
    n = total // 2
    pairs = []
    for swapped in itertools.product((0, 1), repeat=n - 1):
        side = (0, *swapped)  # seed 0 keeps its run-0 version in the first run: each unordered pair once
        first = [k + n * w for k, w in enumerate(side)]
        second = [k + n * (1 - w) for k, w in enumerate(side)]
        pairs.append((verdicts(tables, first), verdicts(tables, second)))
    return _summary(tables, pairs, f"rounding pairs of {n}")


def split_agreement(tables: list[VerdictTable]) -> pd.DataFrame:
    """Every split of the pooled 2S LSTMs into two runs of S (each unordered split once), decided like two runs:
    per row the share of splits whose halves agree and the share of halves giving each verdict; ``attrs``: the
    share of splits agreeing on every row of each table and of all ("all agree") and how many splits ("pairs")."""
    total = _seed_count(tables)
    if total % 2 or total < 4:
        raise ValueError(f"the pooled claims have {total} LSTMs each; a split needs an even number, at least 4")
    half = total // 2
    pairs = []
    for chosen in itertools.combinations(range(total), half):
        if 0 not in chosen:  # each unordered split once: the half holding LSTM 0 comes first
            continue
        rest = [r for r in range(total) if r not in chosen]
        pairs.append((verdicts(tables, list(chosen)), verdicts(tables, rest)))
    return _summary(tables, pairs, f"halves of {half}")


def resampled_agreement(tables: list[VerdictTable], n_seeds: int, draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """Two runs of ``n_seeds`` LSTMs each drawn with replacement from the pooled ones, ``draws`` times (``seed``
    draws them): per row the share of draws whose two runs agree and of runs giving each verdict; ``attrs`` as in
    ``split_agreement``."""
    check_int("n_seeds", n_seeds, minimum=2)
    check_int("draws", draws)
    check_seed("seed", seed)
    total = _seed_count(tables)
    rng = np.random.default_rng(seed)
    pairs = [(verdicts(tables, rng.integers(0, total, n_seeds)), verdicts(tables, rng.integers(0, total, n_seeds)))
             for _ in range(draws)]
    return _summary(tables, pairs, f"{n_seeds} seeds, resampled")


def agreement_table(tables: list[VerdictTable], resample_seeds=(5, 10, 20), draws: int = 500,
                    seed: int = 0) -> pd.DataFrame:
    """``rounding_agreement``, ``split_agreement`` and ``resampled_agreement`` for each of ``resample_seeds`` side by
    side, one row per verdict, then one
    row per table and one for all of them giving the share of pairs that agree on every verdict at once."""
    results = [rounding_agreement(tables), split_agreement(tables)] + [resampled_agreement(tables, n, draws, seed)
                                                                       for n in resample_seeds]
    key = list(LABELS)
    table = results[0]
    for t in results[1:]:
        table = table.merge(t, on=key, sort=False)
    summary = []
    for name in results[0].attrs["all agree"]:
        row = dict.fromkeys(key, "")
        row["part"], row["claim"] = name, "all at once"
        for t in results:
            row[next(c for c in t.columns if c.startswith("agree"))] = t.attrs["all agree"][name]
        summary.append(row)
    table = pd.concat([table, pd.DataFrame(summary)], ignore_index=True)
    table.attrs["pairs"] = {next(c for c in t.columns if c.startswith("agree")): t.attrs["pairs"] for t in results}
    return table
