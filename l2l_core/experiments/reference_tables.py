"""The reference run's result tables: stored from one run (its machine named), and any later run checked against them.

A chapter's tables (per-task losses, tuning grids, summaries, claims, errata and horizon tables) are what its
figures and verdicts are computed from. ``store`` copies them from ``build/full/results`` into
``reference/tables/<chapter>/`` with ``machine.json``; ``check`` compares a run's tables with the stored ones: on
the same machine (``MACHINE_KEYS``) every value must be equal bit for bit; on another machine it reports the
largest relative difference of each table and every verdict that changed. Values that come from measured time
(``run.json``, ``costs.csv``, ``seconds`` columns, the "same wall-clock" rows of ``advantage.csv``) differ between
any two runs and are neither stored nor compared.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from l2l_core.io import atomic_path, write_json
from l2l_core.runtime import jobs
from l2l_core.experiments.registry import CHAPTERS
from l2l_core.experiments.reference import (MACHINE_KEYS, PROFILE, REFERENCE_DIR, REPO_ROOT, code_version,
                                            machine_record)

TIMED_FILES = ("run.json", "costs.csv")  # wall time and memory of the run itself
TIMED_ROWS = {"advantage.csv": ("comparison", "same wall-clock")}  # rows whose budget is a measured time
MACHINE_LOCAL_SETTINGS = ("data_root", "results_dir")  # paths of the machine that ran, not settings of the run


def table_files(chapter: Path) -> list[Path]:
    """A chapter folder's result tables: its CSV and parquet files and ``settings.json``, without the LSTMs'
    own files (``reference/lstms`` stores those) and without files of measured time."""
    lstm_files = ("history-", "provenance-", "training_state")
    return sorted(p for p in Path(chapter).iterdir()
                  if p.is_file() and (p.suffix in (".csv", ".parquet") or p.name == "settings.json")
                  and not p.name.startswith(lstm_files) and p.name not in TIMED_FILES)


def read_table(path: Path) -> pd.DataFrame:
    """One stored or new table as a frame, without the values that come from measured time."""
    if path.name == "settings.json":
        values = json.loads(path.read_text())
        return pd.DataFrame([{k: json.dumps(v) for k, v in sorted(values.items()) if k not in MACHINE_LOCAL_SETTINGS}])
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if path.name in TIMED_ROWS:
        column, prefix = TIMED_ROWS[path.name]
        frame = frame[~frame[column].astype(str).str.startswith(prefix)]
    return frame.drop(columns=[c for c in frame.columns if "seconds" in str(c)]).reset_index(drop=True)


def store(results_root: Path, out: Path, machine: dict) -> list[Path]:
    """Copy every chapter's tables from ``results_root`` into ``out/tables/<chapter>/`` (replacing what was stored
    there) and record the machine that made them in ``out/tables/machine.json``. Returns the files stored."""
    chapters = sorted(p for p in Path(results_root).iterdir() if (p / "settings.json").is_file())
    if not chapters:
        raise FileNotFoundError(f"results={str(results_root)!r} holds no chapter results (<chapter>/settings.json); "
                                "run make reproduce first")
    stored = []
    for chapter in chapters:
        target = Path(out, "tables", chapter.name)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in table_files(chapter):
            with atomic_path(target / path.name) as tmp:
                shutil.copy2(path, tmp)
            stored.append(target / path.name)
    write_json({**machine, "chapters": [c.name for c in chapters]}, Path(out, "tables", "machine.json"))
    return stored


def _largest_relative_difference(new: pd.DataFrame, old: pd.DataFrame) -> float:
    """max |new - old| / max |old| over a table's numeric columns (0.0 when equal; NaN in both places is equal)."""
    gap = 0.0
    for column in old.columns:
        if pd.api.types.is_numeric_dtype(old[column]) and pd.api.types.is_numeric_dtype(new[column]):
            a, b = new[column].to_numpy(float), old[column].to_numpy(float)
            both_nan = np.isnan(a) & np.isnan(b)
            if (np.isnan(a) != np.isnan(b)).any():
                return float("inf")
            scale = np.nanmax(np.abs(b)) if (~both_nan).any() else 0.0
            diff = np.abs(a - b)[~both_nan]
            if diff.size and diff.max() > 0:
                gap = max(gap, float(diff.max() / scale) if scale > 0 else float("inf"))
    return gap


def compare_table(new_path: Path, old_path: Path) -> dict:
    """One table beside the stored one: identical (every value equal, as the same machine must give), else the
    largest relative difference; and how many verdicts (columns named 'verdict') changed."""
    row = {"table": f"{old_path.parent.name}/{old_path.name}"}
    if not new_path.is_file():
        return {**row, "identical": False, "note": "missing in the new run"}
    new, old = read_table(new_path), read_table(old_path)
    if list(new.columns) != list(old.columns) or len(new) != len(old):
        return {**row, "identical": False, "note": f"shape {new.shape} vs stored {old.shape} or other columns"}
    row["identical"] = bool(new.equals(old))
    text = [c for c in old.columns if not pd.api.types.is_numeric_dtype(old[c])]
    row["text differs"] = bool(not new[text].astype(str).equals(old[text].astype(str))) if text else False
    row["largest relative difference"] = 0.0 if row["identical"] else _largest_relative_difference(new, old)
    verdicts = [c for c in old.columns if "verdict" in str(c)]
    row["verdicts changed"] = int(sum((new[c].astype(str) != old[c].astype(str)).sum() for c in verdicts))
    return row


def this_machine() -> dict:
    """What decides the rounding of this process's evaluation jobs, recorded as the stored tables record it."""
    return machine_record(jobs.job_threads())


def check(results_root: Path, out: Path = REFERENCE_DIR, machine: dict | None = None) -> tuple[pd.DataFrame, bool]:
    """Every stored table beside the one ``results_root`` holds now, and whether ``machine`` (default: this one) is
    the one that stored them (equal in every one of ``MACHINE_KEYS``: then every table must be identical)."""
    stored_machine = Path(out, "tables", "machine.json")
    if not stored_machine.is_file():
        raise FileNotFoundError(f"{stored_machine} is missing: no tables are stored yet (make store-evaluation)")
    recorded, machine = json.loads(stored_machine.read_text()), machine or this_machine()
    same = all(recorded.get(k) == machine.get(k) for k in MACHINE_KEYS)
    rows = [compare_table(Path(results_root, old.parent.name, old.name), old)
            for chapter in recorded["chapters"] for old in sorted(Path(out, "tables", chapter).iterdir())]
    return pd.DataFrame(rows), same


def summary(table: pd.DataFrame) -> dict:
    """A check's counts: tables, identical ones, the largest relative difference and the verdicts that changed."""
    column = table.get("verdicts changed")
    return {"tables": len(table), "identical": int(table.identical.astype(bool).sum()),
            "largest": pd.to_numeric(table.get("largest relative difference"), errors="coerce").max(),
            "verdicts changed": int(column.fillna(0).sum()) if column is not None else 0}


def store_evaluation(results: Path, out: Path = REFERENCE_DIR) -> None:
    """A finished run's evaluation of the stored LSTMs: its result tables into ``out/tables`` (with the machine and
    code that made them) and its executed notebooks, from the folder beside ``results``, into ``out/executed``
    (``make book`` builds the book from them without computing anything)."""
    executed = Path(results).parent / "executed"
    missing = [n for n in CHAPTERS if not (executed / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"{executed} lacks the executed notebooks {missing}: store a finished make reproduce")
    files = store(results, out, {**this_machine(), **code_version()})
    Path(out, "executed").mkdir(parents=True, exist_ok=True)
    for name in CHAPTERS:
        with atomic_path(Path(out, "executed", f"{name}.ipynb")) as tmp:
            shutil.copy2(executed / f"{name}.ipynb", tmp)
        files.append(Path(out, "executed", f"{name}.ipynb"))
    size = sum(f.stat().st_size for f in files) / 2**20
    print(f"[reference] stored {len(files)} tables and notebooks ({size:.1f} MB) from {results.parent} into {out}")


def check_tables(results: Path, against: Path = REFERENCE_DIR, save: Path | None = None) -> int:
    """The run's tables beside those stored in ``against``, printed (and written to ``save``). Returns 1 if this is
    the machine that stored them and a table differs (they must then be equal bit for bit), else 0."""
    table, same = check(results, against)
    if save is not None:
        table.to_csv(save, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(table.to_string(index=False))
    counts = summary(table)
    differ = counts["tables"] - counts["identical"]
    print(f"[reference] {counts['identical']} of {counts['tables']} tables identical to {Path(against) / 'tables'} "
          f"({'the machine that stored them' if same else 'another machine'}; largest relative difference "
          f"{counts['largest']:.3g}); {counts['verdicts changed']} verdict(s) changed")
    return 1 if same and differ else 0


def check_run(build: Path) -> None:
    """`make reproduce`'s last step at the book's profile: the run's tables beside the stored ones (written to
    ``<build>/tables-check.csv``); fails on the machine that stored them if one differs. Nothing if none is stored."""
    if (REFERENCE_DIR / "tables" / "machine.json").is_file() and check_tables(build / "results",
                                                                             save=build / "tables-check.csv"):
        raise SystemExit("[reproduce] a table differs from the stored one on the machine that stored them")


def executed_folder(build: Path, notebooks) -> Path:
    """The executed notebooks a book is built from: ``build``'s own, else, for build/full, the stored ones of the
    reference run (``make book`` on a clean clone computes nothing)."""
    own, stored = Path(build) / "executed", REFERENCE_DIR / "executed"
    complete = all((own / f"{n}.ipynb").is_file() for n in notebooks)
    return stored if not complete and Path(build) == REPO_ROOT / "build" / PROFILE and stored.is_dir() else own


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["store", "check"],
                        help="store: --results' tables and the executed notebooks beside them into --reference; "
                             "check: --results' tables beside the stored ones (exit 1 if this is the machine that "
                             "stored them and one differs)")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "build" / PROFILE / "results",
                        help="a full run's results tree (default build/full/results)")
    parser.add_argument("--reference", type=Path, default=REFERENCE_DIR, help="the store (default reference/)")
    args = parser.parse_args(argv)
    if args.command == "store":
        store_evaluation(args.results, args.reference)
        return
    raise SystemExit(check_tables(args.results, args.reference))


if __name__ == "__main__":
    main()
