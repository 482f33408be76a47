"""Compare the verdicts of two `make reproduce` runs (e.g. fused kernels with and without FMA).

    python tools/compare_runs.py RESULTS_A RESULTS_B [--labels A B] [--save book/data/rounding_check --note TEXT]

RESULTS_* are `build/<profile>/results` folders. Prints every verdict of the book (claims after Holm, as on the
conclusions page, and the errata rows) of both runs side by side and whether they agree; exit status 1 if any
differs. ``--save`` stores both runs' verdict tables with ``--note`` (what differed between the runs) where the
book's reproduction page reads them (``l2l_core.book.report.rounding_check``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l2l_core.io import write_frame, write_json
from l2l_core.book.report import compare_verdicts, results_folder, verdict_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs=2, type=results_folder)
    parser.add_argument("--labels", nargs=2, default=("A", "B"))
    parser.add_argument("--save", type=Path, help="store both verdict tables and the note here")
    parser.add_argument("--note", default="", help="what differed between the two runs (stored with --save)")
    args = parser.parse_args(argv)
    labels = tuple(args.labels)
    tables = [verdict_table(p) for p in args.results]
    table = compare_verdicts(*tables, labels=labels)
    differ = int((table["same verdict"] != "yes").sum())
    print(table.to_markdown(index=False))
    print(f"\n{len(table)} verdicts compared; they differ on {differ}.")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for label, frame in zip(labels, tables):
            write_frame(frame, args.save / f"verdicts-{label}.csv")
        write_json({"labels": labels, "note": args.note, "results": [str(p) for p in args.results],
                    "verdicts": len(table), "differ": differ}, args.save / "provenance.json")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
