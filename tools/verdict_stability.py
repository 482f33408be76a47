"""How often would another run give the same verdicts? Decides the book's verdicts again on the LSTMs of two full runs
pooled: as rounding pairs, as halves on disjoint seed sets and, if asked, resampled (``l2l_core.evaluation.stability``).

    python tools/verdict_stability.py RESULTS_A RESULTS_B [--resample-seeds N ...] [--draws 500] [--seed 0]
                                      [--save book/data/verdict_stability --note TEXT]

RESULTS_* are `build/<profile>/results` folders of runs that differ only in what should not matter (float rounding:
e.g. the kernels built with and without FMA). Prints one row per verdict (claims, then errata rows): for rounding
pairs, halves (two runs on disjoint seed sets, never a seed's two versions counted as two seeds) and resampled runs
where asked, the share of pairs that agree and how often each outcome comes out. ``--save`` stores the table with
``--note`` where the reproduction page reads it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from l2l_core.book.report import results_folder
from l2l_core.experiments.verdicts import run_verdict_tables
from l2l_core.evaluation.stability import agreement_table, baseline_gap, pool_tables
from l2l_core.io import write_frame, write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs=2, type=results_folder)
    parser.add_argument("--resample-seeds", nargs="*", type=int, default=[],
                        help="seeds per run of resampled pairs (default none: resampling a pool of rounding twins "
                             "counts a seed's two versions as two seeds)")
    parser.add_argument("--draws", type=int, default=500, help="resampled pairs of runs per seed count (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--save", type=Path, help="store the table and the note here")
    parser.add_argument("--note", default="", help="what the runs are (stored with --save)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runs = [run_verdict_tables(p) for p in args.results]
    pooled = pool_tables(runs)
    table = agreement_table(pooled, tuple(args.resample_seeds), draws=args.draws, seed=args.seed)
    gap = baseline_gap([[d for t in run for d in t.data] for run in runs])
    lstms = pooled[0].data[0].lstm.shape[0]
    counts = ", ".join(f"{len(t.data)} {t.name}" for t in pooled)
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print(f"\nverdicts: {counts}; {lstms} LSTMs each pooled from {len(runs)} runs; pairs compared: "
          f"{table.attrs['pairs']}; largest relative difference of the runs' baselines: {gap:.2g}; "
          f"{time.perf_counter() - start:.0f} s")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        write_frame(table, args.save / "agreement.csv")
        write_json({"note": args.note, "results": [str(p) for p in args.results],
                    "verdicts": {t.name: len(t.data) for t in pooled}, "lstms_pooled": lstms, "pairs": table.attrs["pairs"],
                    "resample_seeds": args.resample_seeds, "draws": args.draws, "seed": args.seed,
                    "baseline_gap": gap, "seed_sets": "disjoint"}, args.save / "provenance.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
