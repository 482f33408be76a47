"""The reproduction page's content: what built the book (machine, versions, wall times), the benchmarks of each CPU,
the scaling estimates, and the stored checks of how far verdicts repeat (float rounding, verdict stability).

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
from l2l_core.book.tables import tidy
from l2l_core.experiments.settings import REPO_ROOT
from l2l_core.runtime.machine import cpu_model, vector_isa

BENCH_RESULTS = REPO_ROOT / "bench" / "results"  # make bench writes bench/results/<cpu>/results.json (bench/cpu_slug.py)
BENCH_FILES = ("results.json", "results-avx2.json")  # make bench, make bench-avx2
ROUNDING_DIR = REPO_ROOT / "book" / "data" / "rounding_check"
STABILITY_DIR = REPO_ROOT / "book" / "data" / "verdict_stability"
SEED_RULE_DIR = REPO_ROOT / "reference" / "seed_rule"  # seeds 0-4 evaluated before seeds 5-9 (reference/README)


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def build_note(profile: str):
    """The page's first line: which profile built the book, and whether its numbers are the book's evidence."""
    return _markdown(f"**This book was built from the `{profile}` profile.**"
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
        items += [_markdown(f"`{path.parent.name}/{path.name}`: {machine.get('cpu')} "
                            f"({machine.get('instruction_sets')}), {machine.get('threads')} threads, kernels "
                            f"`{machine.get('kernel_flags', 'not recorded')}`; peak RSS "
                            f"{bench.attrs.get('peak_rss_mb') or 0:.0f} MB"), tidy(bench)]
    return items or [_markdown("No `make bench` result is stored.")]


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
        items += [_markdown(caption), tidy(scaling)]
    return items or [_markdown("No `make bench` with its jobs part is stored.")]


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
        return [_markdown("No rounding check is stored.")]
    table, info = check
    return [_markdown(f"**{info['note']}** {info['verdicts']} verdicts compared; they differ on {info['differ']}."),
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
        return [_markdown("No verdict-stability measurement is stored.")]
    table, info = stability
    counts = ", ".join(f"{n} verdicts of the {name} table" for name, n in info["verdicts"].items())
    pairs = "; ".join(f"{c.removeprefix('agree ')[1:-1]}: {n} pairs" for c, n in info["pairs"].items())
    return [_markdown(f"**{info['note']}** {counts}; {info['lstms_pooled']} LSTMs pooled for each; {pairs}."),
            tidy(table, widths=CLAIM_WIDTHS)]


def stored_tables_view(build_dir: str | Path, profile: str, reference: Path | None = None) -> list:
    """This run's result tables beside the reference run's stored ones (``reference_tables.check``): on the machine
    that stored them every table must be identical; elsewhere each table's largest relative difference and the
    verdicts that changed."""
    from l2l_core.experiments import reference_tables
    from l2l_core.experiments.settings import REFERENCE_PROFILE

    reference = Path(reference or reference_tables.REFERENCE_DIR)
    stored = reference / "tables" / "machine.json"
    if profile != REFERENCE_PROFILE:
        return [_markdown(f"The stored tables are the `{REFERENCE_PROFILE}` profile's; this book was built from the "
                          f"`{profile}` profile, so there is nothing to compare with them.")]
    if not stored.is_file():
        return [_markdown("No tables of the reference run are stored yet: `make store-evaluation` stores them from a "
                          "finished `make reproduce`.")]
    table, same = reference_tables.check(Path(build_dir) / "results", reference)
    made, counts = json.loads(stored.read_text()), reference_tables.summary(table)
    text = (f"Stored by {made.get('cpu')} (family/model {made.get('cpu_family_model')}, {made.get('instruction_sets')}), "
            f"torch {made.get('torch')}, {made.get('threads')} thread(s) per job, commit {str(made.get('commit'))[:12]}. "
            f"This run is {'on the same machine: every table must be identical' if same else 'on another machine'}. "
            f"{counts['identical']} of {counts['tables']} tables are identical; the largest relative difference is "
            f"{counts['largest']:.3g}; {counts['verdicts changed']} verdict(s) changed. Values of measured time "
            "(seconds, wall-clock budgets) are not compared.")
    return [_markdown(text), tidy(table)]


def reference_run_table(lstms: str | Path | None = None) -> pd.DataFrame:
    """Every LSTM the reference run has stored (``reference/lstms/<chapter>/provenance-*.json``): its arm and seed,
    trajectories, attempts, best validation summed loss, the machine and commit that trained it, and the job's seconds:
    the sum of its epochs' times over every session that worked on it (its history; the provenance's are the last
    session's part only)."""
    from l2l_core.experiments.settings import REFERENCE_DIR

    rows = []
    for path in sorted(Path(lstms or REFERENCE_DIR / "lstms").glob("*/provenance-*.json")):
        facts = json.loads(path.read_text())
        history = path.with_name(path.name.replace("provenance-", "history-").replace(".json", ".csv"))
        trajectories, seconds = None, facts["seconds"]
        if history.is_file():  # the selected attempt's own budget (a restart's wasted epoch is counted before it)
            whole = pd.read_csv(history)
            seconds = float(whole.seconds.sum()) if "seconds" in whole else seconds
            curve = whole[whole.attempt == whole.attempt.max()] if "attempt" in whole else whole
            trajectories = int(curve.trajectories.max() - curve.trajectories.min())
        rows.append({"chapter": facts["chapter"], "LSTM": facts["name"], "seed": facts["meta_seed"],
                     "trajectories": trajectories, "attempts": facts["attempts"],
                     "best validation summed loss": facts["best_val_loss_sum"],
                     "CPU": f"{facts['cpu']} {facts['cpu_family_model']} ({facts['instruction_sets']})",
                     "threads": facts["threads"], "commit": facts["commit"][:7], "job seconds": round(seconds, 1)})
    return pd.DataFrame(rows)


def reference_run_view(lstms: str | Path | None = None) -> list:
    """The reference run's stored LSTMs with a caption that puts the main MNIST arm beside the thesis' selected LSTM."""
    from l2l_core.experiments.setups import THESIS_MNIST_LSTM

    table = reference_run_table(lstms)
    if table.empty:
        return [_markdown("The reference run has stored no LSTM yet (`make reference`).")]
    main = table[(table.chapter == "02_mnist") & (table.LSTM == "lstm")]["best validation summed loss"]
    text = (f"{len(table)} LSTM{'s' if len(table) != 1 else ''} stored. " + (
        f"The main MNIST arm's {len(main)} seeds reach best validation summed losses of {main.min():.2f} to "
        f"{main.max():.2f}; the thesis' selected MNIST LSTM scored {THESIS_MNIST_LSTM}. " if len(main) else "")
        + "Job time by chapter: " + ", ".join(f"{chapter} {secs / 3600:.1f} h" for chapter, secs in
                                                       table.groupby("chapter")["job seconds"].sum().items())
        + " (each job's epochs summed over the sessions that ran it; two jobs side by side on two cores, beside "
          "whatever else ran: not timings).")
    return [_markdown(text), tidy(table)]


def seed_rule_table(folder: str | Path = SEED_RULE_DIR) -> pd.DataFrame | None:
    """The stored evaluation that sized the main MNIST arm (``tools/verdict_checks.py`` on seeds 0-4, in
    ``<folder>/checks``) as the page shows it: per claim its verdict, distance, R and the seeds the rule asks for;
    None when none is stored."""
    from l2l_core.book.pages import percent_ci, verdict_text

    path = Path(folder) / "checks" / "verdict_checks.csv"
    if not path.is_file():
        return None
    checks = pd.read_csv(path)
    asks = [f"{n:.0f}" + (f" (above the cap of {cap})" if capped else "") if pd.notna(n) else ""
            for n, cap, capped in checks[["seeds_needed", "seed_cap", "capped"]].itertuples(index=False)]
    return pd.DataFrame({
        "chapter": checks["experiment"], "setting": checks["setting"], "claim": checks["claim"],
        "seeds": checks["n_seeds"],
        "verdict (Holm)": [verdict_text(v, n) for v, n in checks[["verdict_holm", "near_threshold"]]
                           .itertuples(index=False)],
        "distance, % [95% CI]": [percent_ci(*v) for v in checks[["distance", "distance_lo", "distance_hi"]]
                                 .itertuples(index=False)],
        "R [range]": ["" if pd.isna(r) else f"{r:.2f}\u00a0[{lo:.2f},\u00a0{hi:.2f}]"
                      for r, lo, hi in checks[["R", "R_lo", "R_hi"]].itertuples(index=False)],
        "seeds the rule asks": asks})


def seed_rule_view(folder: str | Path = SEED_RULE_DIR) -> list:
    """The seed-rule evaluation with a caption that counts, from the stored table, the claims that asked for more
    than its seeds and the ones the compute cap limits."""
    from l2l_core.evaluation.repeatability import TARGET

    table = seed_rule_table(folder)
    if table is None:
        return [_markdown("No seed-rule evaluation is stored.")]
    checks = pd.read_csv(Path(folder) / "checks" / "verdict_checks.csv")
    made = json.loads((Path(folder) / "tables" / "machine.json").read_text())
    seeds, cap = int(checks["n_seeds"].max()), int(checks["seed_cap"].max())
    more = checks[checks["seeds_needed"] > seeds]
    capped = checks[checks["capped"].astype(bool)]
    wide = checks[checks["R_lo"] < TARGET]
    text = (f"{len(checks)} claims, {seeds} seeds x {int(checks['n_tasks'].max())} tasks each "
            f"({made['cpu']} {made['cpu_family_model']}, {made['threads']} thread per job). "
            f"The rule asks for more than {seeds} seeds for {len(more)} of them, and for more than the cap of {cap} "
            f"for {len(capped)} ({'; '.join(f'{r.setting}: {r.seeds_needed:.0f}' for r in capped.itertuples())}); "
            f"{len(wide)} claims' R ranges reach below {TARGET} at {seeds} seeds. So the main arm was given the cap: "
            f"seeds {seeds} to {cap - 1} were trained after this table. How it was made: {made['how']}; commits: "
            + "; ".join(f"{chapters} {commit}" for chapters, commit in made["commits"].items()) + ".")
    return [_markdown(text), tidy(table, widths=CLAIM_WIDTHS)]
