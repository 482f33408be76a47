"""`make reproduce`: execute every notebook with papermill into a build folder, then build the book.

Executed copies go to ``<out>/executed/`` (the sources in notebooks/ stay clean). A notebook is
skipped when its executed copy exists and its inputs (notebook, parameters, l2l_core sources,
requirements, data listing, upstream notebooks) hash to the stamp written after its last success,
so an interrupted run resumes where it stopped. Wall times go to ``<out>/timings.csv``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from l2l_core.checks import check_choice
from l2l_core.tasks.data import resolve_data_root
from l2l_core.experiments.registry import CHAPTERS
from l2l_core.experiments.settings import PROFILES, REFERENCE_PROFILE, REPO_ROOT
from l2l_core.io import write_frame, write_json
from l2l_core.runtime.book_build import build_book, executed_notebooks
from l2l_core.runtime.notebook_run import build_kernels, execute_notebook, parse_overrides
from l2l_core.runtime.terminal import minutes_text, time_left

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# name -> notebooks whose results it reads (its stamp includes theirs), in the book's order: from the registry
NOTEBOOKS: dict[str, tuple[str, ...]] = {c.name: c.reads for c in CHAPTERS.values()}


def _hash_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(Path(path).relative_to(REPO_ROOT)).encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _data_listing() -> str:
    """Names and sizes of the files under the data root: a change of data changes the stamp."""
    try:
        root = resolve_data_root()
    except ValueError:
        return "no data root"
    if not root.exists():
        return f"{root}: absent"
    return json.dumps(sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()))


def parameters(name: str, profile: str, out: Path, device: str, relative_to: Path | None = None) -> dict:
    """What `make reproduce` injects into notebook ``name``. With ``relative_to`` (the kernel's working folder)
    paths are relative to it, so the executed notebook on the book's page shows no path of the machine that ran it."""
    def where(path: Path) -> str:
        return os.path.relpath(path, relative_to) if relative_to is not None else str(path)

    results = CHAPTERS[name].results
    if results == "all":  # it reads every chapter's results
        return {"profile": profile, "results_root": where(out / "results")}
    if results == "build":
        return {"build_dir": where(out), "profile": profile}
    return {"profile": profile, "device": device, "results_dir": where(out / "results" / name)}


# parameters that `make reproduce` derives from its own options: overriding them would break the build folder's layout
FIXED_BY_THE_RUN = {"profile": "use PROFILE= (--profile)", "device": "use --device",
                    "results_dir": "use --out", "results_root": "use --out", "build_dir": "use --out"}


def overrides_for(names, overrides: dict) -> dict[str, dict]:
    """Each notebook of ``names`` -> the overrides it declares; refuses an override no notebook of ``names`` takes."""
    if not overrides:
        return {name: {} for name in names}
    fixed = sorted(set(overrides) & set(FIXED_BY_THE_RUN))
    if fixed:
        raise ValueError(f"param(s) {fixed} are set by the run itself: " +
                         "; ".join(f"{k}: {FIXED_BY_THE_RUN[k]}" for k in fixed))
    declared = {name: declared_parameters(name) for name in names}
    unused = sorted(set(overrides) - set().union(*declared.values()))
    if unused:
        allowed = sorted(set().union(*declared.values()))
        raise ValueError(f"param(s) {unused} are parameters of none of the notebooks to run ({', '.join(names)}); "
                         f"allowed: {allowed}")
    return {name: {k: v for k, v in overrides.items() if k in declared[name]} for name in names}


def input_stamp(name: str, params: dict, stamps: dict) -> str:
    package = [*(REPO_ROOT / "l2l_core").rglob("*.py"), *(REPO_ROOT / "l2l_core").rglob("*.cpp")]
    if CHAPTERS[name].shipped_weights:  # only these notebooks re-run when the shipped weights change
        package += [p for p in (REPO_ROOT / "l2l_core" / "optimizers" / "pretrained").iterdir() if p.suffix in (".pt", ".json")]
    for folder in CHAPTERS[name].book_data:
        package += sorted(p for p in (REPO_ROOT / "book" / "data" / folder).glob("*") if p.is_file())
    code = _hash_files(package + [REPO_ROOT / "requirements.txt", NOTEBOOK_DIR / f"{name}.ipynb"])
    blob = json.dumps({"code": code, "params": params, "data": _data_listing(),
                       "upstream": {u: stamps.get(u) for u in NOTEBOOKS[name]}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def declared_parameters(name: str) -> set[str]:
    """The parameters notebook ``name`` declares in its parameters cell."""
    import papermill

    check_choice("notebook", name, NOTEBOOKS)
    return set(papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb")))


def check_parameters(name: str, params: dict) -> None:
    """Refuse parameters the notebook does not declare (papermill itself only warns about typos)."""
    declared = declared_parameters(name)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"parameter(s) {unknown} are not parameters of notebook {name!r}; "
                         f"allowed: {sorted(declared)}")


def execute(name: str, params: dict, out: Path, progress: bool = False) -> tuple[float, float, dict]:
    """Run notebook ``name`` with ``params`` into out/executed/<name>.ipynb (``notebook_run.execute_notebook``):
    seconds, peak memory (MB) of its kernel with its workers, and that peak by kind of process."""
    check_parameters(name, params)
    return execute_notebook(NOTEBOOK_DIR / f"{name}.ipynb", out / "executed" / f"{name}.ipynb", params, cwd=out,
                            job_log=out / "jobs.log", label=f"  {name} ", progress=progress)


def run_notebooks(profile: str, out: Path, device: str = "cpu", only=None, force: bool = False,
                  overrides: dict | None = None) -> pd.DataFrame:
    """Execute the notebooks that are out of date; returns and writes the timings table. ``overrides`` (name ->
    value) replace the profile's value of a parameter in each notebook to run that declares it; they enter the
    notebooks' stamps, so the chapters that read a changed one run again too."""
    stamp_file = out / "stamps.json"
    stamps = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
    timings_file = out / "timings.csv"
    previous = pd.read_csv(timings_file) if timings_file.is_file() else pd.DataFrame(columns=["notebook", "seconds"])
    rows = []
    todo = {}
    changed = overrides_for([n for n in NOTEBOOKS if not only or n in only], overrides or {})
    for name in NOTEBOOKS:  # first decide what runs, so that the time left can be estimated
        if only and name not in only:
            continue
        params = parameters(name, profile, out, device, relative_to=out)  # the kernels run in the build folder
        params.update(changed[name])
        stamp = input_stamp(name, params, stamps)
        executed = out / "executed" / f"{name}.ipynb"
        if force or CHAPTERS[name].always_run or not executed.is_file() or stamps.get(name) != stamp:
            todo[name] = (params, stamp)
    if profile == REFERENCE_PROFILE and todo:  # the book's profile re-evaluates the stored LSTMs, never retrains them
        from l2l_core.experiments.reference import copy_stored_lstms

        copied = copy_stored_lstms(out / "results")
        print(f"[reproduce] reference run: {len(copied)} stored LSTM files copied into {out / 'results'} "
              "(files already there are kept)", flush=True)
    print(f"[reproduce] {len(todo)} of {len(NOTEBOOKS)} notebooks to run ({profile}); last run's time for them: "
          f"{minutes_text(time_left(previous, todo))}", flush=True)
    if todo:
        print(build_kernels(), flush=True)
    progress = sys.stderr.isatty()
    for name in NOTEBOOKS:
        if name not in todo:  # not asked for, or up to date: keep its row from the last run
            old = previous.loc[previous.notebook == name, "seconds"]
            if only and name not in only:
                rows += previous[previous.notebook == name].assign(status="not asked for (earlier time)").to_dict("records")
            else:
                rows.append({"notebook": name, "seconds": float(old.iloc[0]) if len(old) else float("nan"),
                             "status": "up to date (skipped)"})
                print(f"[reproduce] {name}: up to date, skipped", flush=True)
            continue
        params, stamp = todo[name]
        left = list(todo)[list(todo).index(name):]
        print(f"[reproduce] {name}: running ({len(todo) - len(left) + 1}/{len(todo)}); time left by the last run: "
              f"{minutes_text(time_left(previous, left))}", flush=True)
        if name == "99_reproduction":  # let it show this run's timings so far
            write_frame(pd.DataFrame(rows), timings_file)
        seconds, peak_mb, parts = execute(name, params, out, progress)
        stamps[name] = stamp
        write_json(stamps, stamp_file)
        rows.append({"notebook": name, "seconds": seconds, "status": "executed", "peak_mb": peak_mb})
        breakdown = ", ".join(f"{kind} {mb:.0f}" for kind, mb in sorted(parts.items(), key=lambda kv: -kv[1]))
        print(f"[reproduce] {name}: {seconds:.1f} s, peak memory {peak_mb:.0f} MB ({breakdown})", flush=True)
    timings = pd.DataFrame(rows)
    write_frame(timings, timings_file)
    return timings


def prepare(out: Path, profile: str = "smoke", device: str = "cpu") -> list[Path]:
    """Write parameterised (not executed) copies of every notebook into ``out``, e.g. for nbval.

    This is how ``make test`` gets the smoke profile into the notebooks: papermill injects the
    parameters cell, nbval then executes the copies.
    """
    import papermill

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in NOTEBOOKS:
        target = out / f"{name}.ipynb"
        check_parameters(name, parameters(name, profile, out, device))
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(target),
                                   parameters=parameters(name, profile, out, device), prepare_only=True,
                                   kernel_name="python3", progress_bar=False)
        written.append(target)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m l2l_core.runtime.reproduce", description=__doc__)
    parser.add_argument("--profile", default="full", help=f"one of {', '.join(PROFILES)} (default full)")
    parser.add_argument("--out", default=None, help="build folder (default build/<profile>)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help=f"run only these notebooks ({', '.join(NOTEBOOKS)})")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="override a parameter in the notebooks to run that declare it (repeatable; "
                             "a value is a Python literal or text), e.g. --only 04_relu --param n_tasks=20")
    parser.add_argument("--force", action="store_true", help="re-run notebooks even if up to date")
    parser.add_argument("--book-only", action="store_true", help="rebuild the HTML from the executed notebooks")
    parser.add_argument("--prepare", metavar="DIR", help="only write parameterised notebooks into DIR (for nbval)")
    args = parser.parse_args(argv)
    check_choice("profile", args.profile, PROFILES)
    for name in args.only or ():
        check_choice("only", name, NOTEBOOKS)
    overrides = parse_overrides(args.param)
    if args.prepare:
        prepare(Path(args.prepare).resolve(), args.profile, args.device)
        return
    out = Path(args.out) if args.out else REPO_ROOT / "build" / args.profile
    out = out.resolve()
    start = time.perf_counter()
    timings = None if args.book_only else run_notebooks(args.profile, out, args.device, args.only, args.force,
                                                          overrides)
    executed, missing = executed_notebooks(out)
    if args.only and missing:  # a partial run into a new build folder: its notebooks ran, the book cannot be whole
        html = None
        print(f"[reproduce] book not built: {len(missing)} notebooks have not run in {executed} ({', '.join(missing)}); "
              "run without --only (ONLY=) to build it", flush=True)
    else:
        html = build_book(out)
    print(summary(out, html, timings, time.perf_counter() - start), flush=True)
    if args.profile == REFERENCE_PROFILE and not (args.book_only or args.only):
        from l2l_core.experiments.reference_tables import check_run
        check_run(out)


def summary(out: Path, html: Path | None, timings: pd.DataFrame | None, seconds: float) -> str:
    """The closing lines of `make reproduce`: what ran, how long, peak memory, where the book is, the verdicts."""
    import resource

    from l2l_core.evaluation.claims import holm_verdicts
    from l2l_core.book.pages import collect_claims

    lines = [f"[reproduce] done in {seconds / 60:.1f} min"]
    if timings is not None:
        ran = timings["status"].eq("executed")
        lines.append(f"  notebooks: {int(ran.sum())} run ({timings.loc[ran, 'seconds'].sum() / 60:.1f} min), "
                     f"{int((~ran).sum())} up to date or not asked for")
    if timings is not None and "peak_mb" in timings and timings["peak_mb"].notna().any():
        worst = timings.loc[timings["peak_mb"].idxmax()]
        lines.append(f"  peak memory of a notebook (kernel and its workers): {worst['peak_mb']:.0f} MB ({worst['notebook']})")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernels are our children
    lines.append(f"  peak memory of the largest child process (a notebook kernel, the book build or the compiler of the "
                 f"fused kernels): {peak:.0f} MB")
    lines.append(f"  book: {html / 'index.html' if html is not None else 'not built'}")
    try:
        verdicts = holm_verdicts(collect_claims(out / "results"))["verdict_holm"].value_counts()
        lines.append("  claims (Holm): " + ", ".join(f"{n} {v}" for v, n in verdicts.items()))
    except FileNotFoundError:
        pass
    return "\n".join(lines)


if __name__ == "__main__":
    main()
