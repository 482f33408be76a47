"""How stable each verdict is under other meta-training seeds: the book's claims decided again on halves and
resamples of the LSTMs that two runs trained.

Meta-training is chaotic: two runs that differ only in float rounding train different LSTMs from the same seeds, so
for a verdict they are two independent draws of S seeds each (the baselines and the held-out tasks are the same).
Pooling both runs' LSTMs gives 2S per claim, and

- ``split_agreement`` decides every split of them into two halves of S, as two runs would (each half's claims table
  under Holm, ``claims.holm_verdicts``), and counts how often the halves agree: what a rounding pair at S seeds
  agrees on, from LSTMs actually trained, without another run;
- ``resampled_agreement`` draws two runs of n seeds with replacement from the 2S (a seed bootstrap), for n beyond S:
  how agreement would grow with more seeds. Rough by construction: 2S LSTMs stand for the population of seeds.

A split or draw takes the same seed rows in every claim, as a run does: one MNIST LSTM per seed serves chapters 02-06.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd

from l2l_core.checks import check_int, check_seed
from l2l_core.evaluation.claims import ClaimData, holm_verdicts

SHOWN = ("holds", "inconclusive", "does not hold")


def pool_runs(runs: list[list[ClaimData]]) -> list[ClaimData]:
    """One ``ClaimData`` per claim with the LSTM rows of every run stacked in run order (run 0's seeds first).

    The runs must state the same claims in the same order on the same tasks; their baselines should be the same
    runs (within one machine they are bit for bit, the kernels only touch the LSTM): the first run's are used, and
    ``baseline_gap`` says how far the others' are from them.
    """
    if len(runs) < 2:
        raise ValueError(f"runs has {len(runs)} run(s); pooling needs at least two")
    first = runs[0]
    for k, run in enumerate(runs[1:], start=1):
        keys = [(d.claim.experiment, d.claim.setting, d.claim.claim) for d in run]
        if keys != [(d.claim.experiment, d.claim.setting, d.claim.claim) for d in first]:
            raise ValueError(f"run {k} states other claims than run 0 (or in another order); compare runs of one profile")
        for a, b in zip(first, run):
            if a.lstm.shape[1] != b.lstm.shape[1]:
                raise ValueError(f"claim {a.claim.claim!r}: run {k} has {b.lstm.shape[1]} tasks, run 0 {a.lstm.shape[1]}")
    return [replace(parts[0], meta_seeds=tuple(range(sum(len(p.meta_seeds) for p in parts))),
                    lstm=np.concatenate([p.lstm for p in parts])) for parts in zip(*runs)]


def baseline_gap(runs: list[list[ClaimData]]) -> float:
    """The largest relative difference between any run's baseline scores and run 0's (0.0: the same runs)."""
    gap = 0.0
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            for name, values in a.baselines.items():
                other = b.baselines[name]
                gap = max(gap, float(np.max(np.abs(other - values) / np.maximum(np.abs(values), 1e-30))))
    return gap


def verdicts(data: list[ClaimData], rows) -> list[str]:
    """The book's verdict (Holm across the whole table, as on the conclusions page) of each claim on seed ``rows``."""
    ps = [d.p_values(rows) for d in data]
    table = pd.DataFrame({"p_holds": [p for p, _ in ps], "p_fails": [f for _, f in ps], "verdict": ""})
    return list(holm_verdicts(table)["verdict_holm"])


def _seed_count(data: list[ClaimData]) -> int:
    counts = {d.lstm.shape[0] for d in data}
    if len(counts) != 1:
        raise ValueError(f"the claims have different numbers of LSTMs ({sorted(counts)}); pool runs of one profile")
    return counts.pop()


def _summary(data: list[ClaimData], pairs: list[tuple[list[str], list[str]]], label: str) -> pd.DataFrame:
    """Per claim: how often the two runs of each pair agree, and how often each verdict comes out."""
    rows = []
    for k, d in enumerate(data):
        a = [va[k] for va, _ in pairs]
        b = [vb[k] for _, vb in pairs]
        outcomes = pd.Series(a + b).value_counts(normalize=True)
        rows.append({"experiment": d.claim.experiment, "setting": d.claim.setting or "", "claim": d.claim.claim,
                     f"agree ({label})": float(np.mean([x == y for x, y in zip(a, b)])),
                     **{f"{v} ({label})": float(outcomes.get(v, 0.0)) for v in SHOWN}})
    table = pd.DataFrame(rows)
    table.attrs["all agree"] = float(np.mean([va == vb for va, vb in pairs]))
    table.attrs["pairs"] = len(pairs)
    return table


def split_agreement(data: list[ClaimData]) -> pd.DataFrame:
    """Every split of the pooled 2S LSTMs into two runs of S (each unordered split once), decided like two runs:
    per claim the share of splits whose halves agree and the share of halves giving each verdict; ``attrs``: the
    share of splits agreeing on every claim ("all agree") and how many splits ("pairs")."""
    total = _seed_count(data)
    if total % 2 or total < 4:
        raise ValueError(f"the pooled claims have {total} LSTMs each; a split needs an even number, at least 4")
    half = total // 2
    pairs = []
    for chosen in itertools.combinations(range(total), half):
        if 0 not in chosen:  # each unordered split once: the half holding LSTM 0 comes first
            continue
        rest = [r for r in range(total) if r not in chosen]
        pairs.append((verdicts(data, list(chosen)), verdicts(data, rest)))
    return _summary(data, pairs, f"halves of {half}")


def resampled_agreement(data: list[ClaimData], n_seeds: int, draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """Two runs of ``n_seeds`` LSTMs each drawn with replacement from the pooled ones, ``draws`` times (``seed``
    draws them): per claim the share of draws whose two runs agree and of runs giving each verdict; ``attrs`` as in
    ``split_agreement``."""
    check_int("n_seeds", n_seeds, minimum=2)
    check_int("draws", draws)
    check_seed("seed", seed)
    total = _seed_count(data)
    rng = np.random.default_rng(seed)
    pairs = [(verdicts(data, rng.integers(0, total, n_seeds)), verdicts(data, rng.integers(0, total, n_seeds)))
             for _ in range(draws)]
    return _summary(data, pairs, f"{n_seeds} seeds, resampled")


def agreement_table(data: list[ClaimData], resample_seeds=(5, 10, 20), draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """``split_agreement`` beside ``resampled_agreement`` for each of ``resample_seeds``, one row per claim, with a
    last row "every claim" giving the share of pairs that agree on all of them."""
    tables = [split_agreement(data)] + [resampled_agreement(data, n, draws, seed) for n in resample_seeds]
    key = ["experiment", "setting", "claim"]
    table = tables[0]
    for t in tables[1:]:
        table = table.merge(t, on=key)
    every = {k: "" for k in key}
    every["claim"] = "every claim at once"
    for t in tables:
        column = next(c for c in t.columns if c.startswith("agree"))
        every[column] = t.attrs["all agree"]
    table = pd.concat([table, pd.DataFrame([every])], ignore_index=True)
    table.attrs["pairs"] = {next(c for c in t.columns if c.startswith("agree")): t.attrs["pairs"] for t in tables}
    return table

