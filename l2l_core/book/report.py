"""Tables for the book's results pages: all claim checks, wall times, machine and versions, benchmarks."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd

from l2l_core.book.tables import tidy
from l2l_core.book.pages import collect_claims
from l2l_core.experiments.registry import CHAPTERS
from l2l_core.experiments.settings import REPO_ROOT

__all__ = ["collect_claims", "glue_conclusions", "machine_info", "timings_table", "bench_table", "scaling_table"]


# a claim's chapter ('02 MNIST' -> '02') -> its page, which holds the claim's full row
CHAPTER_PAGES = {name[:2]: f"{name}.ipynb" for name in CHAPTERS}


def conclusions_view(claims: pd.DataFrame) -> pd.DataFrame:
    """The conclusions table (after ``claims.holm_verdicts`` and ``repeatability.add_repeatability``): per claim its
    distance to the threshold with the crossed and the Holm-adjusted 95% intervals, the re-run interval, the verdict
    (Holm) with near threshold, its repeatability R [range] and the seeds the seed rule asks for. The full row is on
    the claim's chapter page (linked)."""
    from l2l_core.book.pages import percent_ci, verdict_text

    def r_text(r, lo, hi):
        return "" if pd.isna(r) else f"{r:.2f}\u00a0[{lo:.2f},\u00a0{hi:.2f}]"

    def seeds_text(n, tasks, capped):
        if pd.isna(n):
            return ""
        return f"{int(n)}" + (f" ({int(tasks)} tasks)" if tasks and tasks > 0 else "") + (" (capped)" if capped else "")

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
        "seeds needed": [seeds_text(*v) for v in claims[["seeds_needed", "tasks_needed", "capped"]]
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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _vector_isa() -> str:
    """The widest x86 vector extensions the CPU reports (the kernels are compiled for them)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = [isa for isa in ("avx512f", "avx2", "fma") if f" {isa}" in flags]
    return ", ".join(found) or "none of avx512f, avx2, fma"


def _kernel_status() -> str:
    from l2l_core.optimizers import fused

    if fused.kernels() is None:
        return f"off ({fused.unavailable_reason()})"
    extra = os.environ.get("L2L_KERNEL_CFLAGS", "")
    return "on" + (f", extra flags {extra}" if extra else "")


def machine_info() -> pd.DataFrame:
    """What built this book: CPU, cores, memory, Python, torch and the key library versions."""
    import importlib.metadata as md

    import torch

    rows = {"CPU": _cpu_model(), "cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "CUDA available": torch.cuda.is_available(), "Python": platform.python_version(),
            "platform": platform.platform(), "instruction sets": _vector_isa(), "fused kernels": _kernel_status()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        rows["memory"] = f"{pages / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    for package in ("l2l-core", "torch", "torchvision", "numpy", "pandas", "seaborn", "papermill", "jupyter-book"):
        try:
            rows[package] = md.version(package)
        except md.PackageNotFoundError:
            rows[package] = "not installed"
    return pd.DataFrame({"item": list(rows), "value": [str(v) for v in rows.values()]})


def timings_table(build_dir: str | Path) -> pd.DataFrame:
    """Wall time per notebook of the last `make reproduce` into ``build_dir`` (plus the total)."""
    path = Path(build_dir) / "timings.csv"
    if not path.is_file():
        return pd.DataFrame({"notebook": [], "seconds": [], "status": []})
    table = pd.read_csv(path)
    total = pd.DataFrame([{"notebook": "total (notebooks above)", "seconds": table["seconds"].sum(), "status": ""}])
    table = pd.concat([table, total], ignore_index=True)
    table["minutes"] = (table["seconds"] / 60).round(2)
    table["seconds"] = table["seconds"].round(1)
    if "peak_mb" in table:  # kernel and its workers, sampled while the notebook ran
        table["peak_mb"] = table["peak_mb"].round(0)
    return table


BENCH_FILES = (REPO_ROOT / "bench" / "results.json", REPO_ROOT / "bench" / "results-avx2.json")  # make bench, bench-avx2


def bench_table(path: str | Path = BENCH_FILES[0]) -> pd.DataFrame:
    """The latest `make bench` results (median seconds, GFLOP/s, times the matmul floor), or an empty table if none
    was run; the machine and its kernels' build in ``attrs``."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame({"workload": [], "median seconds": []})
    data = json.loads(path.read_text())
    rows = [{"workload": name, "median seconds": w["median_s"], "GFLOP/s": w.get("gflop_per_s"),
             "x matmul floor": w.get("ratio_over_matmul_floor")} for name, w in data["workloads"].items()]
    table = pd.DataFrame(rows)
    table.attrs["peak_rss_mb"] = data.get("peak_rss_mb")
    table.attrs["machine"] = data.get("machine")
    return table


def scaling_table(path: str | Path = REPO_ROOT / "bench" / "results.json") -> pd.DataFrame:
    """The latest `make bench`'s expected wall times on 2/16/64 cores (``l2l_core.runtime.scaling``), in minutes, with the
    machine whose unit costs they use and its 1 x 2 vs 2 x 1 jobs measurement in ``attrs``; empty if none."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    if "scaling" not in data:
        return pd.DataFrame({"profile": [], "cores": [], "minutes": []})
    table = pd.DataFrame(data["scaling"]["table"])
    table = table.rename(columns={"minutes": "minutes (notebooks in order)",
                                  "floor_minutes": "floor on any number of cores",
                                  "across_notebooks_minutes": "minutes (jobs across notebooks)",
                                  "any_schedule_bound_minutes": "no schedule beats (minutes)"})
    table.attrs.update(machine=data["scaling"]["machine"], unit_costs=data["scaling"]["unit_costs_s"],
                       jobs=data.get("jobs"))
    return table


ROUNDING_DIR = REPO_ROOT / "book" / "data" / "rounding_check"
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


def rounding_check(folder: str | Path = ROUNDING_DIR):
    """The stored float-rounding check (two full runs differing only in rounding, tools/compare_runs.py --save):
    (side-by-side table, provenance dict), or None when none is stored."""
    folder = Path(folder)
    if not (folder / "provenance.json").is_file():
        return None
    info = json.loads((folder / "provenance.json").read_text())
    tables = [pd.read_csv(folder / f"verdicts-{label}.csv").fillna("") for label in info["labels"]]
    return compare_verdicts(*tables, labels=info["labels"]), info


STABILITY_DIR = REPO_ROOT / "book" / "data" / "verdict_stability"


def verdict_stability(folder: str | Path = STABILITY_DIR):
    """The stored verdict-stability table (tools/verdict_stability.py --save) for the page: per verdict how often each
    outcome came out in the rounding pairs' runs and how often two runs agree (rounding pairs, halves, resampled runs
    with more seeds), as percentages; with its provenance dict, or None when none is stored."""
    folder = Path(folder)
    if not (folder / "provenance.json").is_file():
        return None
    from l2l_core.evaluation.stability import LABELS

    info = json.loads((folder / "provenance.json").read_text())
    table = pd.read_csv(folder / "agreement.csv")
    text = list(LABELS)
    # the page shows each measure's agreement, and the outcomes of the rounding pairs' runs (the file keeps them all)
    other_outcomes = [c for c in table.columns if c not in text and not c.startswith("agree") and "rounding" not in c]
    table = table.drop(columns=other_outcomes)
    shares = [c for c in table.columns if c not in text]
    table[text] = table[text].fillna("")
    table[shares] = table[shares].map(lambda x: "" if pd.isna(x) else f"{100 * x:.0f}%")
    return table, info
