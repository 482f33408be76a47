"""Issue 33's checks on a run's verdicts: can their reproducibility be promised?

    python tools/verdict_checks.py RESULTS [RESULTS_B ...] [--seed-cap N] [--draws 500] [--seed 0]
                                   [--opposite-limit 0.05] [--out DIR]

RESULTS is a run's `build/<profile>/results` folder (its chapters' losses.parquet and settings.json, read as the book
reads them: ``experiments.verdicts.run_claim_data``). Further folders are runs of the same profile that differ only in
float rounding: their LSTMs are pooled for check (A), each seed's versions standing for one seed (rounding twins are
not independent seeds); (B) and (C) are about the first run.

- (A) No claim gives opposite decided verdicts (holds against does not hold) in more than ``--opposite-limit`` of the
  pairs of runs on disjoint seed sets (halves of the distinct seeds; every pair where there are at most ``--draws``,
  else that many drawn: ``stability.split_agreement``), each run decided as the book decides one (Holm per family).
  Claims with fewer than 4 distinct seeds are not checked (a one-seed half has no seed term in its interval).
- (B) Every claim at least ``claims.NEAR`` from its threshold repeats its decided verdict (holds if it lies on the
  claim's side, does not hold otherwise) with probability R >= ``repeatability.TARGET`` at the run's seeds and tasks
  (the power formula), or the seed rule asks for more than ``--seed-cap`` seeds (default: the run's own, i.e. the run
  is the cap) or more tasks than the run has: it is printed with that count and "limited by the compute cap". It
  fails where the rule's seeds fit under the cap but the run had fewer.
- (C) Every claim nearer than NEAR is printed as near threshold, with its R.

Writes ``verdict_checks.json`` (each check's outcome) and ``verdict_checks.csv`` (one row per claim) to ``--out``
(default: beside RESULTS, `build/<profile>/verdict_checks`). Exit code 0 when every check passes, 1 when one fails.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from l2l_core.evaluation.claims import COLUMNS, NEAR, RULES, claim_row, holm_verdicts
from l2l_core.evaluation.repeatability import TARGET, add_repeatability, components_of, outcome_probabilities
from l2l_core.evaluation.stability import claims_table, pool_tables, seed_pools, split_agreement
from l2l_core.experiments.verdicts import run_claim_data
from l2l_core.io import write_frame, write_json

LIMITED = "limited by the compute cap"
MIN_HALF = 2  # seeds per half for (A)
KEYS = ["experiment", "setting", "claim"]


def claims_with_repeatability(data: list, seed_cap: int | None = None) -> pd.DataFrame:
    """The run's claims table as the book decides it (Holm within each family) with repeatability and the seed rule
    (``repeatability.add_repeatability``, capped at ``seed_cap`` seeds for every experiment; default: the run's own),
    plus ``p_decided``: the probability that a run of this size gives the decided verdict the claim's side implies."""
    table = holm_verdicts(pd.DataFrame([claim_row(d) for d in data], columns=COLUMNS))
    cap = None if seed_cap is None else {e: seed_cap for e in table["experiment"]}
    table = add_repeatability(table, seed_cap=cap)
    table["seed_cap"] = [seed_cap if seed_cap is not None else n for n in table["n_seeds"]]
    table["p_decided"] = [
        outcome_probabilities(r["distance"], components_of(r), r["fail_gap"], int(r["family_size"]))[
            "holds" if r["distance"] > 0 else "does not hold"] if np.isfinite(r["sigma_seed"]) else math.nan
        for _, r in table.iterrows()]
    return table


def check_a(agreement: pd.DataFrame, limit: float = 0.05, checkable=None) -> tuple[dict, list[float]]:
    """(A) from ``stability.disjoint_agreement``'s table: per claim the share of pairs with opposite decided
    verdicts, and whether none of the ``checkable`` claims (default: all) exceeds ``limit``; the others' shares are
    NaN."""
    col = next(c for c in agreement.columns if c.startswith("opposite ("))
    checkable = [True] * len(agreement) if checkable is None else list(checkable)
    shares = [float(x) if ok else math.nan for x, ok in zip(agreement[col], checkable)]
    failing = [dict(zip(KEYS, r), opposite=float(x)) for r, x in zip(agreement[KEYS].itertuples(index=False), shares)
               if x > limit]
    checked = [x for x in shares if not math.isnan(x)]
    return {"passed": not failing if checked else None, "limit": limit, "measure": col.removeprefix("opposite "),
            "pairs": agreement.attrs.get("pairs"), "exhaustive": agreement.attrs.get("exhaustive"),
            "checked": len(checked), "largest": max(checked) if checked else math.nan, "failing": failing,
            **({} if checked else {"reason": "no claim has 4 distinct seeds"})}, shares


def check_b(table: pd.DataFrame, target: float = TARGET) -> tuple[dict, list[str]]:
    """(B) per claim at least NEAR from its threshold: "repeats" (p_decided >= target), LIMITED (the seed rule asks
    for more than the cap, more tasks than the run, or no tried size reaches it), or "fails" (the rule's seeds fit
    under the cap but the run had fewer, or R is missing); "" for the others."""
    status = []
    for _, r in table.iterrows():
        if r["verdict_holm"] == "not run" or not abs(r["distance"]) >= NEAR:
            status.append("")
        elif r["p_decided"] >= target:
            status.append("repeats")
        elif bool(r["capped"]):
            status.append(LIMITED)
        else:
            status.append("fails")
    failing = [dict(zip(KEYS, (r[k] for k in KEYS)), p_decided=float(r["p_decided"]),
                    seeds_needed=float(r["seeds_needed"]), n_seeds=int(r["n_seeds"]), seed_cap=int(r["seed_cap"]))
               for s, (_, r) in zip(status, table.iterrows()) if s == "fails"]
    limited = [dict(zip(KEYS, (r[k] for k in KEYS)), seeds_needed=float(r["seeds_needed"]),
                    tasks_needed=int(r["tasks_needed"]), n_seeds=int(r["n_seeds"]), n_tasks=int(r["n_tasks"]))
               for s, (_, r) in zip(status, table.iterrows()) if s == LIMITED]
    return {"passed": not failing, "target": target, "near": NEAR, "checked": sum(bool(s) for s in status),
            "limited": limited, "failing": failing}, status


def check_c(table: pd.DataFrame) -> tuple[dict, list[str]]:
    """(C) every tested claim nearer than NEAR is marked near threshold and has its R; a claim marked near threshold
    must be nearer than NEAR."""
    status = []
    for _, r in table.iterrows():
        near = abs(r["distance"]) < NEAR
        if r["verdict_holm"] == "not run" or not (near or bool(r["near_threshold"])):
            status.append("")
        elif near and bool(r["near_threshold"]) and np.isfinite(r["R"]):
            status.append(f"near threshold, R = {r['R']:.2f}")
        else:
            status.append("fails")
    failing = [dict(zip(KEYS, (r[k] for k in KEYS)), distance=float(r["distance"]),
                    near_threshold=bool(r["near_threshold"]), R=float(r["R"]))
               for s, (_, r) in zip(status, table.iterrows()) if s == "fails"]
    return {"passed": not failing, "near": NEAR, "near_claims": sum(s.startswith("near") for s in status),
            "failing": failing}, status


def run_checks(results: list[Path], seed_cap: int | None = None, draws: int = 500, seed: int = 0,
               limit: float = 0.05) -> tuple[dict, pd.DataFrame]:
    """The three checks on the runs ``results`` (the first is the run checked; all are pooled for (A)): the summary
    and the per-claim table."""
    runs = [run_claim_data(p) for p in results]
    tables = [claims_table(run) for run in runs]
    pooled = [tables[0]] if len(tables) == 1 else pool_tables([[t] for t in tables])
    pools = seed_pools(pooled)
    table = claims_with_repeatability(runs[0], seed_cap)
    if min(len(rows) for rows in pools.values()) >= 2:
        agreement = split_agreement(pooled, draws=draws, seed=seed)
        # halves of one seed are not checked: a one-seed run's interval has no seed term (the t over tasks), so two
        # of them disagree about anything a seed moves; the book's runs have at least two per half
        checkable = [len(pools[d.meta_seeds]) >= 2 * MIN_HALF for d in pooled[0].data]
        a, shares = check_a(agreement, limit, checkable)
        table["opposite"] = shares
        table["agree"] = [x if ok else math.nan for x, ok in
                          zip(agreement[next(c for c in agreement.columns if c.startswith("agree ("))], checkable)]
    else:  # one seed: no two disjoint runs to compare
        a = {"passed": None, "limit": limit, "reason": "a claim has one seed: no disjoint runs to compare"}
        table["opposite"], table["agree"] = math.nan, math.nan
    b, table["check_b"] = check_b(table)
    c, table["check_c"] = check_c(table)
    summary = {"results": [str(p) for p in results], "rules": RULES, "target": TARGET,
               "seed_cap": seed_cap if seed_cap is not None else "the run's own seeds",
               "distinct_seeds": {", ".join(map(str, sorted(rows))): len(rows) for rows in pools.values()},
               "A": a, "B": b, "C": c, "passed": all(x["passed"] is not False for x in (a, b, c))}
    keep = KEYS + ["family", "verdict_holm", "distance", "distance_lo", "distance_hi", "near_threshold", "R", "R_lo",
                   "R_hi", "p_decided", "seeds_needed", "tasks_needed", "capped", "n_seeds", "n_tasks", "seed_cap",
                   "agree", "opposite", "check_b", "check_c"]
    return summary, table[keep]


def _json_safe(obj):
    """``obj`` with NaN as null (strict JSON) and numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"results folder {text!r} does not exist; give build/<profile>/results of a run")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=_folder)
    parser.add_argument("--seed-cap", type=int, help="the most seeds compute allows a run (default: the run's own)")
    parser.add_argument("--draws", type=int, default=500, help="pairs of disjoint runs drawn where there are more")
    parser.add_argument("--seed", type=int, default=0, help="seed of those draws (default 0)")
    parser.add_argument("--opposite-limit", type=float, default=0.05, help="check (A)'s limit (default 0.05)")
    parser.add_argument("--out", type=Path, help="where the summary goes (default: beside RESULTS, verdict_checks)")
    args = parser.parse_args(argv)
    summary, table = run_checks(args.results, args.seed_cap, args.draws, args.seed, args.opposite_limit)
    out = args.out or args.results[0].resolve().parent / "verdict_checks"
    out.mkdir(parents=True, exist_ok=True)
    write_frame(table, out / "verdict_checks.csv")
    write_json(_json_safe(summary), out / "verdict_checks.json")
    shown = table.assign(claim=[c if len(c) <= 60 else c[:57] + "..." for c in table["claim"]])
    print(shown[KEYS + ["verdict_holm", "distance", "R", "p_decided", "seeds_needed", "opposite", "check_b",
                        "check_c"]].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    for name in "ABC":
        check = summary[name]
        word = "not checked" if check["passed"] is None else "passed" if check["passed"] else "FAILED"
        counted = {"A": "checked", "B": "checked", "C": "near_claims"}[name]
        print(f"({name}) {word}" + (f": {check['reason']}" if "reason" in check else
                                    f" ({check[counted]} claims {'near threshold' if name == 'C' else 'checked'})"
                                    + (f"; failing: {len(check['failing'])}" if check["failing"] else "")))
    for row in summary["B"]["limited"]:
        asks = (f"{row['seeds_needed']:.0f} seeds x {row['tasks_needed']} tasks" if np.isfinite(row["seeds_needed"])
                else f"more than {row['tasks_needed']} tasks (no tried size reaches R = {TARGET})")
        print(f"  {LIMITED}: {row['experiment']} / {row['claim'][:60]}: the rule asks for {asks} "
              f"(the run: {row['n_seeds']} x {row['n_tasks']})")
    print(f"summary: {out}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
