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
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from .checks import check_choice
from .data import resolve_data_root
from .experiments import PROFILES, REPO_ROOT
from .io import atomic_path, write_frame, write_json

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# name -> notebooks whose results it reads (its stamp includes theirs)
NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "01_quadratic": (),
    "02_mnist": (),
    "03_architectures": ("02_mnist",),
    "04_relu": ("02_mnist",),
    "05_mnist_like": ("02_mnist",),
    "06_cifar_svhn": ("02_mnist",),
    "07_drop_in": ("02_mnist",),
    "08_errata": ("02_mnist", "03_architectures", "04_relu", "05_mnist_like", "06_cifar_svhn"),
    "09_long_horizons": ("02_mnist",),
    "90_conclusions": ("01_quadratic", "02_mnist", "03_architectures", "04_relu", "05_mnist_like", "06_cifar_svhn"),
    "99_reproduction": (),
}
ALWAYS_RUN = ("99_reproduction",)  # it reports this very run's timings
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


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


def parameters(name: str, profile: str, out: Path, device: str) -> dict:
    params = {"profile": profile, "device": device}
    if name == "90_conclusions":
        params = {"profile": profile, "results_root": str(out / "results")}
    elif name == "07_drop_in":
        params = {"profile": profile, "checkpoint": str(out / "results" / "02_mnist" / "lstm-seed0.pt")}
    elif name == "99_reproduction":
        params = {"build_dir": str(out), "profile": profile}
    else:
        params["results_dir"] = str(out / "results" / name)
    return params


def input_stamp(name: str, params: dict, stamps: dict) -> str:
    code = _hash_files(list((REPO_ROOT / "l2l_core").glob("*.py")) + [REPO_ROOT / "requirements.txt",
                                                                   NOTEBOOK_DIR / f"{name}.ipynb"])
    blob = json.dumps({"code": code, "params": params, "data": _data_listing(),
                       "upstream": {u: stamps.get(u) for u in NOTEBOOKS[name]}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_parameters(name: str, params: dict) -> None:
    """Refuse parameters the notebook does not declare (papermill itself only warns about typos)."""
    import papermill

    check_choice("notebook", name, NOTEBOOKS)
    declared = papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"parameter(s) {unknown} are not parameters of notebook {name!r}; "
                         f"allowed: {sorted(declared)}")


def execute(name: str, params: dict, out: Path) -> float:
    """Run one notebook with papermill into out/executed/<name>.ipynb (atomically); returns seconds."""
    import papermill

    check_parameters(name, params)
    target = out / "executed" / f"{name}.ipynb"
    start = time.perf_counter()
    with atomic_path(target) as tmp:
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(tmp.with_suffix(".ipynb")),
                                   parameters=params, cwd=str(NOTEBOOK_DIR), kernel_name="python3",
                                   progress_bar=False, report_mode=False)
        os.replace(tmp.with_suffix(".ipynb"), tmp)
    return time.perf_counter() - start


def run_notebooks(profile: str, out: Path, device: str = "cpu", only=None, force: bool = False) -> pd.DataFrame:
    """Execute the notebooks that are out of date; returns and writes the timings table."""
    stamp_file = out / "stamps.json"
    stamps = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
    timings_file = out / "timings.csv"
    previous = pd.read_csv(timings_file) if timings_file.is_file() else pd.DataFrame(columns=["notebook", "seconds"])
    rows = []
    for name in NOTEBOOKS:
        if only and name not in only:  # keep its row from the last run in the timings table
            rows += previous[previous.notebook == name].to_dict("records")
            continue
        params = parameters(name, profile, out, device)
        stamp = input_stamp(name, params, stamps)
        executed = out / "executed" / f"{name}.ipynb"
        if not force and name not in ALWAYS_RUN and executed.is_file() and stamps.get(name) == stamp:
            old = previous.loc[previous.notebook == name, "seconds"]
            rows.append({"notebook": name, "seconds": float(old.iloc[0]) if len(old) else float("nan"),
                         "status": "up to date (skipped)"})
            print(f"[reproduce] {name}: up to date, skipped", flush=True)
            continue
        print(f"[reproduce] {name}: running ({profile})", flush=True)
        if name == "99_reproduction":  # let it show this run's timings so far
            write_frame(pd.DataFrame(rows), timings_file)
        seconds = execute(name, params, out)
        stamps[name] = stamp
        write_json(stamps, stamp_file)
        rows.append({"notebook": name, "seconds": seconds, "status": "executed"})
        print(f"[reproduce] {name}: {seconds:.1f} s", flush=True)
    timings = pd.DataFrame(rows)
    write_frame(timings, timings_file)
    return timings


def build_book(out: Path) -> Path:
    """Stage the book sources plus the executed notebooks in out/site and build HTML (warnings are errors)."""
    site = out / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for item in BOOK_FILES:
        src = REPO_ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, site / item)
    executed = out / "executed"
    missing = [n for n in NOTEBOOKS if not (executed / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"executed notebooks missing in {executed}: {missing}; run without --book-only first")
    # dot-files are the temporary copies of an interrupted run (io.atomic_path): never part of the book
    shutil.copytree(executed, site / "book" / "experiments", ignore=shutil.ignore_patterns(".*"))
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(site), "--builder", "html", "-W",
           "--keep-going"]
    subprocess.run(cmd, check=True)
    html = site / "_build" / "html"
    print(f"[reproduce] book: {html / 'index.html'}", flush=True)
    return html


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
    parser = argparse.ArgumentParser(prog="python -m l2l_core.reproduce", description=__doc__)
    parser.add_argument("--profile", default="full", help=f"one of {', '.join(PROFILES)} (default full)")
    parser.add_argument("--out", default=None, help="build folder (default build/<profile>)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help=f"run only these notebooks ({', '.join(NOTEBOOKS)})")
    parser.add_argument("--force", action="store_true", help="re-run notebooks even if up to date")
    parser.add_argument("--book-only", action="store_true", help="rebuild the HTML from the executed notebooks")
    parser.add_argument("--prepare", metavar="DIR", help="only write parameterised notebooks into DIR (for nbval)")
    args = parser.parse_args(argv)
    check_choice("profile", args.profile, PROFILES)
    for name in args.only or ():
        check_choice("only", name, NOTEBOOKS)
    if args.prepare:
        prepare(Path(args.prepare).resolve(), args.profile, args.device)
        return
    out = Path(args.out) if args.out else REPO_ROOT / "build" / args.profile
    out = out.resolve()
    if not args.book_only:
        run_notebooks(args.profile, out, args.device, args.only, args.force)
    build_book(out)


if __name__ == "__main__":
    main()
