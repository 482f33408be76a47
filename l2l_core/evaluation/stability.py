"""How stable each verdict is under float rounding and other meta-training seeds: the book's verdicts decided again
on recombinations of the LSTMs of one run, or of two runs that differ only in float rounding.

A run's LSTMs are one per meta-training seed. Two runs that differ only in float rounding train, from each seed, two
versions of its LSTM (*rounding twins*): mostly as different as two seeds' (meta-training is chaotic), sometimes
close (where rounding barely moves meta-training), and never independent draws. Pooled (``pool_runs``: the baselines
and held-out tasks are the same), each claim keeps every LSTM with its seed (``ClaimData.meta_seeds`` repeats a seed
once per run), and

- ``disjoint_agreement`` decides pairs of runs drawn on *disjoint* seed sets (two runs never share a seed; a twin
  stands for its seed, one version of it per run, never both): by default the pairs of disjoint halves
  (``split_agreement``), or runs of ``n_seeds`` each (``resampled_agreement``; at most half the distinct seeds). Every
  such pair is enumerated where there are at most ``draws`` of them, else ``draws`` are drawn at random. This is
  what an independent re-run does; the share of pairs giving opposite decided verdicts (holds against does not hold)
  is issue 33's check (A);
- ``rounding_agreement`` gives each seed's two versions to two runs in every way (2^(S-1) pairs) and decides both: how
  often a rounding pair agrees, the pair that ran being one of these. Those pairs reuse the same 2S LSTMs: together
  they are about one replicate, not 2^(S-1).

Every recombination takes the same seeds in every claim, as a run does: one MNIST LSTM per seed serves chapters
02-06, so their verdicts are correlated. Claims trained on another seed set (the PyTorch-init contrast uses the first
five seeds) form their own *pool* and are drawn on their own. The claims table is decided under Holm within each
family, errata rows alone (``VerdictTable``), as the book does. Per verdict only: a share of pairs agreeing on every
verdict at once is the product of the per-claim shares and tends to 0 as claims are added, so none is given.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from l2l_core.checks import check_int, check_seed
from l2l_core.evaluation.claims import ClaimData, decide, holm_verdicts

SHOWN = ("holds", "inconclusive", "does not hold")
OPPOSITE = {"holds", "does not hold"}  # two decided verdicts that contradict each other


def pool_runs(runs: list[list[ClaimData]]) -> list[ClaimData]:
    """One ``ClaimData`` per claim with the LSTM rows of every run stacked in run order (run 0's seeds first); its
    ``meta_seeds`` lists each row's seed, so a seed's versions (one per run) are known to be twins.

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
    return [replace(parts[0], meta_seeds=tuple(s for p in parts for s in p.meta_seeds),
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
        """Each row's verdict on seed ``rows`` (LSTM row positions, the same in every claim; or a dict from a claim's
        ``meta_seeds`` to its rows, one entry per seed pool), as the book decides this table: Holm within each family."""
        ps = [d.p_values(r, competitor_rows=r) for d in self.data  # a run of these seeds, competitors too
              for r in [rows[d.meta_seeds] if isinstance(rows, dict) else rows]]
        if not self.holm:
            return [decide(h, f) for h, f in ps]
        table = pd.DataFrame({"p_holds": [p for p, _ in ps], "p_fails": [f for _, f in ps], "verdict": "",
                              "family": [d.claim.family for d in self.data]})
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
    """Per row: how often the two runs of each pair agree, how often they give opposite decided verdicts (holds against
    does not hold), and how often each verdict comes out; ``attrs["pairs"]``: how many pairs."""
    rows, k = [], 0
    for table in tables:
        for labels in table.labels:
            a = [va[k] for va, _ in pairs]
            b = [vb[k] for _, vb in pairs]
            outcomes = pd.Series(a + b).value_counts(normalize=True)
            rows.append({**{key: labels[key] for key in LABELS},
                         f"agree ({label})": float(np.mean([x == y for x, y in zip(a, b)])),
                         f"opposite ({label})": float(np.mean([{x, y} == OPPOSITE for x, y in zip(a, b)])),
                         **{f"{v} ({label})": float(outcomes.get(v, 0.0)) for v in SHOWN}})
            k += 1
    frame = pd.DataFrame(rows)
    frame.attrs["pairs"] = len(pairs)
    return frame


def rounding_agreement(tables: list[VerdictTable]) -> pd.DataFrame:
    """Two runs' LSTMs pooled (run 0's S seeds, then run 1's in the same order): every way of giving each seed's two
    versions to two runs (each unordered pair once, 2^(S-1)) decided like a rounding pair; the pair that ran is one
    of them. Unlike ``disjoint_agreement`` it keeps whatever a seed's two versions share (and the runs of a pair share
    every seed). Per row the share of pairs that agree, give opposite verdicts, and of runs giving each verdict."""
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


def seed_pools(tables: list[VerdictTable]) -> dict[tuple, dict[int, list[int]]]:
    """Per seed pool (a claim's ``meta_seeds``; claims trained on the same seeds share one), each seed's LSTM rows: one
    for a run, one per run for pooled runs (its rounding twins)."""
    pools = {}
    for table in tables:
        for d in table.data:
            if d.meta_seeds not in pools:
                rows = {}
                for row, s in enumerate(d.meta_seeds):
                    rows.setdefault(s, []).append(row)
                pools[d.meta_seeds] = rows
    return pools


def _pool_pairs(rows: dict[int, list[int]], n: int):
    """Every unordered pair of disjoint runs of ``n`` seeds from ``rows`` (seed -> its versions' rows), each seed by
    one of its versions: (rows of run a, rows of run b)."""
    seeds = sorted(rows)
    for a in itertools.combinations(seeds, n):
        rest = [s for s in seeds if s not in a]
        for b in itertools.combinations(rest, n):
            if b[0] < a[0]:  # each unordered pair once: the run holding the smaller seed first
                continue
            for va in itertools.product(*(rows[s] for s in a)):
                for vb in itertools.product(*(rows[s] for s in b)):
                    yield sorted(va), sorted(vb)


def _pool_pair_count(rows: dict[int, list[int]], n: int) -> int:
    versions = [len(v) for v in rows.values()]
    if len(set(versions)) != 1:  # seeds with unequal numbers of versions: count by enumeration (small pools only)
        return sum(1 for _ in _pool_pairs(rows, n))
    k = len(rows)
    return math.comb(k, n) * math.comb(k - n, n) // 2 * versions[0] ** (2 * n)


def disjoint_pairs(tables: list[VerdictTable], n_seeds: int | None = None, draws: int = 500,
                   seed: int = 0) -> tuple[list[tuple[dict, dict]], bool]:
    """Pairs of runs on disjoint seed sets, as (rows a, rows b) dicts from each seed pool to its rows (what
    ``VerdictTable.verdicts`` takes), and whether they are every such pair (True) or ``draws`` drawn at random.
    ``n_seeds``: seeds per run in every pool (default: half of each pool's distinct seeds, rounded down)."""
    check_int("draws", draws)
    check_seed("seed", seed)
    pools = seed_pools(tables)
    sizes = {}
    for key, rows in pools.items():
        n = len(rows) // 2 if n_seeds is None else check_int("n_seeds", n_seeds)
        if n < 1 or 2 * n > len(rows):
            raise ValueError(f"a seed pool has {len(rows)} distinct seeds; two disjoint runs of {n_seeds or n} seeds "
                             f"need at least {2 * max(n, 1)}")
        sizes[key] = n
    if len(pools) == 1:
        (key, rows), = pools.items()
        if _pool_pair_count(rows, sizes[key]) <= draws:
            return [({key: a}, {key: b}) for a, b in _pool_pairs(rows, sizes[key])], True
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(draws):
        a, b = {}, {}
        for key, rows in pools.items():
            seeds, n = sorted(rows), sizes[key]
            order = rng.permutation(len(seeds))
            pick = [rows[seeds[j]][rng.integers(len(rows[seeds[j]]))] for j in order[:2 * n]]
            a[key], b[key] = sorted(pick[:n]), sorted(pick[n:])
        pairs.append((a, b))
    return pairs, False


def disjoint_agreement(tables: list[VerdictTable], n_seeds: int | None = None, draws: int = 500,
                       seed: int = 0) -> pd.DataFrame:
    """Pairs of runs on disjoint seed sets (``disjoint_pairs``), each decided as the book decides a run: per row the
    share of pairs that agree, that give opposite decided verdicts, and of runs giving each verdict; ``attrs``: how
    many pairs ("pairs") and whether they are all of them ("exhaustive")."""
    pairs, exhaustive = disjoint_pairs(tables, n_seeds, draws, seed)
    if n_seeds is None:
        sizes = sorted({len(rows) // 2 for rows in seed_pools(tables).values()})
        label = f"halves of {'/'.join(map(str, sizes))}"
    else:
        label = f"{n_seeds} seeds, disjoint"
    frame = _summary(tables, [(verdicts(tables, a), verdicts(tables, b)) for a, b in pairs], label)
    frame.attrs["exhaustive"] = exhaustive
    return frame


def split_agreement(tables: list[VerdictTable], draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """Pairs of disjoint halves of each pool's distinct seeds (a twin stands for its seed: one version per run), every
    one where there are at most ``draws``: how often two runs with other seeds agree (``disjoint_agreement``)."""
    return disjoint_agreement(tables, None, draws, seed)


def resampled_agreement(tables: list[VerdictTable], n_seeds: int, draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """Pairs of runs of ``n_seeds`` seeds each on disjoint seed sets, drawn (or enumerated, ``disjoint_agreement``):
    runs smaller than halves, to see how agreement changes with the seed count. Runs larger than half the distinct
    seeds cannot be disjoint and are refused; for them the power formula (``repeatability``) answers."""
    check_int("n_seeds", n_seeds, minimum=1)
    return disjoint_agreement(tables, n_seeds, draws, seed)


def agreement_table(tables: list[VerdictTable], resample_seeds=(), draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """``rounding_agreement`` (where two runs are pooled), ``split_agreement`` and ``resampled_agreement`` for each of
    ``resample_seeds``, side by side, one row per verdict; ``attrs["pairs"]``: how many pairs each measure decided."""
    results = []
    if _rounding_pool(tables):
        results.append(rounding_agreement(tables))
    results.append(split_agreement(tables, draws, seed))
    results += [resampled_agreement(tables, n, draws, seed) for n in resample_seeds]
    key = list(LABELS)
    table = results[0]
    for t in results[1:]:
        table = table.merge(t, on=key, sort=False)
    table.attrs["pairs"] = {next(c for c in t.columns if c.startswith("agree")): t.attrs["pairs"] for t in results}
    return table


def _rounding_pool(tables: list[VerdictTable]) -> bool:
    """Whether every claim holds two versions of each of its seeds, run 0's then run 1's in the same order (two
    pooled runs): what ``rounding_agreement`` recombines."""
    for table in tables:
        for d in table.data:
            n = len(d.meta_seeds) // 2
            if len(d.meta_seeds) % 2 or d.meta_seeds[:n] != d.meta_seeds[n:] or len(set(d.meta_seeds[:n])) != n:
                return False
    return len({d.lstm.shape[0] for table in tables for d in table.data}) == 1
