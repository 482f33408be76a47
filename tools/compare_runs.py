"""Compare the claim verdicts of two `make reproduce` runs (e.g. fused kernels with and without FMA).

    python tools/compare_runs.py RESULTS_A RESULTS_B [--labels A B] [--out table.md]

RESULTS_* are `build/<profile>/results` folders. Prints one Markdown table: every claim of the book (Holm-adjusted
verdict, as on the conclusions page) and every errata row (verdict with the defect and fixed), each run's paired
difference with its interval and seeds holding, and whether the verdicts agree. Exit status 1 if any verdict differs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from l2l_core.claims import holm_verdicts
from l2l_core.experiments import collect_claims

KEY = ["experiment", "setting", "claim", "metric"]


def book_claims(results: Path) -> pd.DataFrame:
    """The conclusions page's table of one run: verdict after Holm, difference [interval], seeds holding."""
    claims = holm_verdicts(collect_claims(results))
    claims["difference [95% CI]"] = [f"{d:.3g} [{lo:.3g}, {hi:.3g}]" for d, lo, hi in
                                     zip(claims["difference"], claims["difference_lo"], claims["difference_hi"])]
    return claims[KEY + ["verdict_holm", "difference [95% CI]", "seeds"]].rename(columns={"verdict_holm": "verdict"})


def errata_claims(results: Path) -> pd.DataFrame:
    """The errata chapter's rows of one run (verdict with the defect / fixed), empty if it did not run."""
    path = results / "08_errata" / "errata.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["defect", *KEY, "verdict"])
    table = pd.read_csv(path)
    table["verdict"] = table["with defect"] + " / " + table["fixed"]
    return table[["defect", *KEY, "verdict"]]


def compare(a: pd.DataFrame, b: pd.DataFrame, key: list[str], labels: tuple[str, str]) -> pd.DataFrame:
    merged = a.merge(b, on=key, how="outer", suffixes=(f" ({labels[0]})", f" ({labels[1]})"), indicator=True)
    merged["same verdict"] = (merged[f"verdict ({labels[0]})"] == merged[f"verdict ({labels[1]})"]).map(
        {True: "yes", False: "**no**"})
    return merged.drop(columns="_merge")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs=2, type=Path)
    parser.add_argument("--labels", nargs=2, default=("A", "B"))
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    for path in args.results:
        if not path.is_dir():
            parser.error(f"results folder {str(path)!r} does not exist; give build/<profile>/results of a run")
    labels = tuple(args.labels)
    book = compare(*(book_claims(p) for p in args.results), KEY, labels)
    errata = compare(*(errata_claims(p) for p in args.results), ["defect", *KEY], labels)
    text = ("## Claims (Holm-adjusted verdicts)\n\n" + book.drop(columns="metric").to_markdown(index=False)
            + "\n\n## Errata (verdict with the defect / fixed)\n\n"
            + errata.drop(columns=["metric", "setting"]).to_markdown(index=False) + "\n")
    differ = int((book["same verdict"] != "yes").sum() + (errata["same verdict"] != "yes").sum())
    text += f"\n{len(book)} claims and {len(errata)} errata rows compared; verdicts differ on {differ}.\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
