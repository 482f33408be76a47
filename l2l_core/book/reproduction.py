"""The reproduction page's content: what built the book (machine, versions, wall times), the benchmarks of each CPU,
the scaling estimates, and the stored checks of how far verdicts repeat (float rounding, verdict stability); the
reference run's sections are in :mod:`l2l_core.book.reference_views`.

Each ``*_view`` returns the items the page shows in order (a caption as Markdown, then a table), so that the
notebook shows them with one ``display(*...)`` call and holds no formatting of its own. Captions made here carry no
math: Markdown produced by code is shown as text, not typeset."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd

from l2l_core.book.pages import CLAIM_WIDTHS
from l2l_core.book.report import compare_verdicts
from l2l_core.book.tables import markdown, tidy
from l2l_core.experiments.settings import REPO_ROOT
from l2l_core.runtime.machine import cpu_model, vector_isa

BENCH_RESULTS = REPO_ROOT / "bench" / "results"  # make bench writes bench/results/<cpu>/results.json (bench/cpu_slug.py)
BENCH_FILES = ("results.json", "results-avx2.json")  # make bench, make bench-avx2
ROUNDING_DIR = REPO_ROOT / "book" / "data" / "rounding_check"
STABILITY_DIR = REPO_ROOT / "book" / "data" / "verdict_stability"


def build_note(profile: str):
    """The page's first line: which profile built the book, and whether its numbers are the book's evidence."""
    return markdown(f"**This book was built from the `{profile}` profile.**"
                    + ("" if profile == "full" else " Its numbers are not the book's evidence: run `make reproduce`."))


def kernel_status() -> str:
    """Whether the fused kernels are on in this process (with any extra compiler flags), else why not."""
    from l2l_core.optimizers import fused

    if fused.kernels() is None:
        return f"off ({fused.unavailable_reason()})"
    extra = os.environ.get("L2L_KERNEL_CFLAGS", "")
    return "on" + (f", extra flags {extra}" if extra else "")


def machine_info() -> pd.DataFrame:
    """What built this book: CPU, cores, memory, Python, torch and the key library versions."""
    import importlib.metadata as md

    import torch

    rows = {"CPU": cpu_model(), "cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "CUDA available": torch.cuda.is_available(), "Python": platform.python_version(),
            "platform": platform.platform(), "instruction sets": vector_isa(), "fused kernels": kernel_status()}
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


def bench_files(root: str | Path = BENCH_RESULTS) -> list[Path]:
    """Every stored `make bench` / `make bench-avx2` result, CPU folder by CPU folder."""
    root = Path(root)
    return [p for cpu in sorted(root.iterdir()) if cpu.is_dir() for name in BENCH_FILES if (p := cpu / name).is_file()]


def bench_table(path: str | Path) -> pd.DataFrame:
    """One `make bench` result (median seconds, GFLOP/s, times the matmul floor), or an empty table if the file is
    absent; the machine and its kernels' build in ``attrs``."""
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


def bench_views(root: str | Path = BENCH_RESULTS) -> list:
    """Each stored bench result as a caption naming its CPU, instruction sets, threads and kernel build, then its
    table; one line saying so when none is stored."""
    items = []
    for path in bench_files(root):
        bench = bench_table(path)
        machine = bench.attrs.get("machine") or {}
        items += [markdown(f"`{path.parent.name}/{path.name}`: {machine.get('cpu')} "
                           f"({machine.get('instruction_sets')}), {machine.get('threads')} threads, kernels "
                           f"`{machine.get('kernel_flags', 'not recorded')}`; peak RSS "
                           f"{bench.attrs.get('peak_rss_mb') or 0:.0f} MB"), tidy(bench)]
    return items or [markdown("No `make bench` result is stored.")]


def scaling_table(path: str | Path) -> pd.DataFrame:
    """A `make bench`'s expected wall times on 2/16/64 cores (``l2l_core.runtime.scaling``), in minutes, with the
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


def scaling_views(root: str | Path = BENCH_RESULTS) -> list:
    """For each CPU whose `make bench` ran the jobs part: the machine and its 1 x 2 vs 2 x 1 measurement, then the
    expected wall times."""
    items = []
    for path in bench_files(root):
        scaling = scaling_table(path)
        if not len(scaling):
            continue
        machine, jobs = scaling.attrs["machine"], scaling.attrs.get("jobs")
        caption = f"`{path.parent.name}`: {machine['cpu']} ({machine['cores']} cores, {machine['instruction_sets']})."
        if jobs:
            caption += (f" {jobs['workload']}: 1 worker x 2 threads {jobs['1x2_s']:.0f} s, 2 workers x 1 thread "
                        f"{jobs['2x1_s']:.0f} s (ratio {jobs['ratio_1x2_over_2x1']:.2f}).")
        items += [markdown(caption), tidy(scaling)]
    return items or [markdown("No `make bench` with its jobs part is stored.")]


def rounding_check(folder: str | Path = ROUNDING_DIR):
    """The stored float-rounding check (two full runs differing only in rounding, tools/compare_runs.py --save):
    (side-by-side table, provenance dict), or None when none is stored."""
    folder = Path(folder)
    if not (folder / "provenance.json").is_file():
        return None
    info = json.loads((folder / "provenance.json").read_text())
    tables = [pd.read_csv(folder / f"verdicts-{label}.csv").fillna("") for label in info["labels"]]
    return compare_verdicts(*tables, labels=info["labels"]), info


def rounding_check_view(folder: str | Path = ROUNDING_DIR) -> list:
    """The rounding check's note and how many verdicts differ, then every verdict of both runs side by side."""
    check = rounding_check(folder)
    if check is None:
        return [markdown("No rounding check is stored.")]
    table, info = check
    return [markdown(f"**{info['note']}** {info['verdicts']} verdicts compared; they differ on {info['differ']}."),
            tidy(table, widths=CLAIM_WIDTHS)]


def verdict_stability(folder: str | Path = STABILITY_DIR):
    """The stored verdict-stability table (tools/verdict_stability.py --save) for the page: per verdict how often each
    outcome came out in the rounding pairs' runs and how often two runs agree, as percentages; with its provenance
    dict, or None when none is stored. Measures that count a seed's two rounding versions as two seeds (halves of a
    pool stored before the halves were drawn from disjoint seed sets, and every resampled measure) are
    pseudo-replicated: they stay in the file and are not shown."""
    folder = Path(folder)
    if not (folder / "provenance.json").is_file():
        return None
    from l2l_core.evaluation.stability import LABELS

    info = json.loads((folder / "provenance.json").read_text())
    table = pd.read_csv(folder / "agreement.csv")
    text = list(LABELS)
    halves = info.get("seed_sets") == "disjoint"
    # every rounding-pair column (agreement and outcomes); of the halves, their agreement only
    kept = [c for c in table.columns if c in text or "rounding pairs" in c or (halves and c.startswith("agree (halves"))]
    table = table[kept].copy()
    shares = [c for c in table.columns if c not in text]
    table[text] = table[text].astype(object).fillna("")  # empty text columns are read as float
    table[shares] = table[shares].map(lambda x: "" if pd.isna(x) else f"{100 * x:.0f}%")
    info["pairs"] = {k: v for k, v in info["pairs"].items() if k in table.columns}
    return table, info


def stability_view(folder: str | Path = STABILITY_DIR) -> list:
    """The verdict-stability note (verdicts, LSTMs pooled, pairs per measure), then the table."""
    stability = verdict_stability(folder)
    if stability is None:
        return [markdown("No verdict-stability measurement is stored.")]
    table, info = stability
    counts = ", ".join(f"{n} verdicts of the {name} table" for name, n in info["verdicts"].items())
    pairs = "; ".join(f"{c.removeprefix('agree ')[1:-1]}: {n} pairs" for c, n in info["pairs"].items())
    return [markdown(f"**{info['note']}** {counts}; {info['lstms_pooled']} LSTMs pooled for each; {pairs}."),
            tidy(table, widths=CLAIM_WIDTHS)]
