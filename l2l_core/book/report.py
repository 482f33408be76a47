"""The conclusions page's tables (every claim check, Holm, repeatability) and a run's verdicts for comparing runs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from l2l_core.book.tables import tidy
from l2l_core.book.pages import collect_claims
from l2l_core.experiments.registry import CHAPTERS

__all__ = ["collect_claims", "conclusions_view", "glue_conclusions", "verdict_table", "compare_verdicts"]


# a claim's chapter ('02 MNIST' -> '02') -> its page, which holds the claim's full row
CHAPTER_PAGES = {name[:2]: f"{name}.ipynb" for name in CHAPTERS}


def conclusions_view(claims: pd.DataFrame) -> pd.DataFrame:
    """The conclusions table (after ``claims.holm_verdicts`` and ``repeatability.add_repeatability``): per claim its
    distance to the threshold with the crossed and the Holm-adjusted 95% intervals, the re-run interval, the verdict
    (Holm) with near threshold, its repeatability R [range] and the seeds the seed rule asks for. The full row is on
    the claim's chapter page (linked)."""
    from l2l_core.book.pages import percent_ci, r_text, seeds_needed_text, verdict_text

    link = [f"[{e}]({CHAPTER_PAGES.get(e[:2], '')})" if e[:2] in CHAPTER_PAGES else e for e in claims["experiment"]]
    return pd.DataFrame({
        "chapter": link, "setting": claims["setting"].fillna(""), "test": claims["test"],
        "distance, % [95% CI]": [percent_ci(*v) for v in claims[["distance", "distance_lo", "distance_hi"]]
                                 .itertuples(index=False)],
        "Holm-adjusted CI, %": [percent_ci(*v) for v in claims[["distance", "adjusted_lo", "adjusted_hi"]]
                                .itertuples(index=False)],
        "re-run interval, %": [percent_ci(*v) for v in claims[["distance", "seed_lo", "seed_hi"]]
                               .itertuples(index=False)],
        "verdict": [verdict_text(v, n) for v, n in zip(claims["verdict_holm"], claims["near_threshold"])],
        "R": [r_text(*v) for v in claims[["R", "R_lo", "R_hi"]].itertuples(index=False)],
        "seeds needed": [seeds_needed_text(*v) for v in claims[["seeds_needed", "tasks_needed", "capped"]]
                         .itertuples(index=False)],
    })


def glue_conclusions(claims: pd.DataFrame) -> pd.DataFrame:
    """Holm within each family (the thesis' claims; the book's own contrasts), repeatability per claim, then glue the
    counts of the thesis family's adjusted verdicts, near-threshold and capped counts, and the tables. Returns the
    table with the adjusted and repeatability columns."""
    from myst_nb import glue

    from l2l_core.evaluation.claims import holm_verdicts
    from l2l_core.evaluation.repeatability import add_repeatability

    claims = add_repeatability(holm_verdicts(claims))
    thesis = claims[claims["family"].fillna("thesis") == "thesis"]
    counts = thesis["verdict_holm"].value_counts()
    glue("conclusions.n", str(len(thesis)), display=False)
    for verdict in ("holds", "does not hold", "inconclusive"):
        glue(f"conclusions.{verdict.replace(' ', '_')}", str(int(counts.get(verdict, 0))), display=False)
    glue("conclusions.near", str(int((thesis["near_threshold"] == True).sum())), display=False)  # noqa: E712
    glue("conclusions.capped", str(int(thesis["capped"].sum())), display=False)
    glue("conclusions.profiles", ", ".join(sorted(set(claims["profile"]))), display=False)
    glue("conclusions.table", tidy(conclusions_view(thesis), widths={"test": 11}), display=False)
    contrast = claims[claims["family"] == "contrast"]
    glue("conclusions.contrasts", tidy(conclusions_view(contrast), widths={"test": 11}), display=False)
    glue("conclusions.sources", tidy(thesis[["experiment", "claim", "thesis", "source"]]), display=False)
    glue("conclusions.tested", str(int(thesis["p_holds"].notna().sum())), display=False)
    return claims


_KEY = ["experiment", "setting", "claim", "metric"]


def results_folder(text: str) -> Path:
    """An argparse type for a run's `build/<profile>/results` folder (the tools that compare runs): it must exist."""
    import argparse

    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"results folder {text!r} does not exist; give build/<profile>/results of a run")
    return path


def verdict_table(results_root: str | Path) -> pd.DataFrame:
    """Every verdict of one run: the book's claims (after Holm, as on the conclusions page) and the errata rows
    (verdict with the defect / fixed), with the paired difference and the seeds it holds for."""
    from l2l_core.evaluation.claims import holm_verdicts

    root = Path(results_root)
    claims = holm_verdicts(collect_claims(root))
    claims["distance [95% CI]"] = [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                                   zip(claims["distance"], claims["distance_lo"], claims["distance_hi"])]
    table = claims[_KEY + ["verdict_holm", "distance [95% CI]"]].rename(columns={"verdict_holm": "verdict"})
    table.insert(0, "part", "claims")
    errata = root / "08_errata" / "errata.csv"
    if errata.is_file():
        rows = pd.read_csv(errata)
        rows = rows.assign(part="errata " + rows["defect"].str[:3],
                           verdict=rows["with defect"] + " / " + rows["fixed"])[["part", *_KEY, "verdict"]]
        table = pd.concat([table, rows], ignore_index=True)
    return table.fillna("")


def compare_verdicts(a: pd.DataFrame, b: pd.DataFrame, labels=("A", "B")) -> pd.DataFrame:
    """Two runs' ``verdict_table``s side by side, one row per claim, with whether the verdicts agree."""
    key = ["part", *_KEY]
    merged = a.merge(b, on=key, how="outer", suffixes=tuple(f" ({x})" for x in labels))
    same = merged[f"verdict ({labels[0]})"] == merged[f"verdict ({labels[1]})"]
    merged["same verdict"] = same.map({True: "yes", False: "NO"})
    return merged.drop(columns="metric").fillna("")
