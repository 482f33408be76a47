"""The book's HTML from a build folder's executed notebooks: the sources staged in ``<out>/site`` with the notebooks,
then Jupyter Book with warnings as errors, so the book that is reported is the book that is tested."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from l2l_core.experiments.registry import CHAPTERS
from l2l_core.experiments.settings import REPO_ROOT

BOOK_FILES = ("_config.yml", "_toc.yml", "book")
NOTEBOOKS = tuple(CHAPTERS)  # every chapter is one executed notebook of the book


def executed_notebooks(out: Path) -> tuple[Path, list[str]]:
    """The folder the book is built from (``reference_tables.executed_folder``) and the notebooks missing there."""
    from l2l_core.experiments.reference_tables import executed_folder

    executed = executed_folder(out, NOTEBOOKS)
    return executed, [n for n in NOTEBOOKS if not (executed / f"{n}.ipynb").is_file()]


def build_book(out: Path) -> Path:
    """Stage the book sources plus the executed notebooks in out/site and build HTML (warnings are errors)."""
    executed, missing = executed_notebooks(out)  # before anything is staged: a refused build leaves no site behind
    if missing:
        raise FileNotFoundError(f"executed notebooks missing in {executed}: {missing}; run without --book-only first")
    site = out / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for item in BOOK_FILES:
        src = REPO_ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, site / item)
    # dot-files are the temporary copies of an interrupted run (io.atomic_path): never part of the book
    shutil.copytree(executed, site / "book" / "experiments", ignore=shutil.ignore_patterns(".*"))
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(site), "--builder", "html", "-W",
           "--keep-going"]
    log = out / "book-build.log"
    with open(log, "w") as handle:  # Sphinx's page-by-page chatter goes to the log; shown if the build fails
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text().splitlines()[-40:]
        raise RuntimeError(f"jupyter-book failed (exit {done.returncode}); last lines of {log}:\n" + "\n".join(tail))
    return site / "_build" / "html"
