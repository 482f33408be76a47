"""End to end: the smoke profile through papermill, the claims, and the Jupyter Book build."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from l2l_core.runtime import memory as runtime_memory, notebook_run, terminal as progress, reproduce

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    done = subprocess.run([sys.executable, "-m", "l2l_core.runtime.reproduce", "--profile", "smoke", "--out", str(out)],
                          capture_output=True, text=True)
    (out / "terminal.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_terminal_shows_progress_and_a_summary_without_noise(smoke_build):
    log = (smoke_build / "terminal.log").read_text()
    n = len(reproduce.NOTEBOOKS)
    assert f"{n} of {n} notebooks to run (smoke)" in log and f"running ({n}/{n})" in log
    assert "without encryption" not in log  # the kernels talk over local sockets
    assert "[reproduce] fused kernels: " in log.split("01_quadratic: running")[0]  # built before any notebook
    assert "dumping search index" not in log and (smoke_build / "book-build.log").is_file()  # Sphinx's chatter
    # each notebook's jobs are reported in the terminal, not on the book's pages
    assert re.search(r"^  02_mnist meta-train lstm: \d+ jobs", log, re.M), log[:3000]
    assert re.search(r"^  02_mnist evaluate mnist\S* \(0, 'LSTM', 0\) done \(1/\d+", log, re.M)
    assert "[jobs]" not in (smoke_build / "executed" / "02_mnist.ipynb").read_text()
    timings = pd.read_csv(smoke_build / "timings.csv")  # a kernel with torch loaded holds well over 100 MB
    assert (timings.loc[timings.status == "executed", "peak_mb"] > 100).all(), timings
    summary = log[log.index("[reproduce] done in"):]
    assert f"notebooks: {n} run" in summary and "peak memory" in summary and "index.html" in summary
    verdicts = re.search(r"claims \(Holm\): (.*)", summary).group(1)
    claims = pd.read_csv(smoke_build / "results" / "02_mnist" / "claims.csv")
    assert sum(int(part.split()[0]) for part in verdicts.split(", ")) >= len(claims)


def test_time_left_adds_the_last_runs_times_and_knows_when_it_cannot():
    previous = pd.DataFrame({"notebook": ["a", "b", "c"], "seconds": [10.0, 20.0, float("nan")]})
    assert progress.time_left(previous, ["a", "b"]) == 30.0
    assert progress.time_left(previous, ["b", "c"]) is None
    assert progress.time_left(previous, ["d"]) is None


def test_every_notebook_is_executed_with_results_files(smoke_build):
    for name in reproduce.NOTEBOOKS:
        assert (smoke_build / "executed" / f"{name}.ipynb").is_file()
    for name in ("01_quadratic", "02_mnist", "03_architectures", "04_relu"):
        results = smoke_build / "results" / name
        for f in ("losses.parquet", "tuning.csv", "claims.csv", "summary.csv", "settings.json", "meta_training.csv"):
            assert (results / f).is_file(), (name, f)
        claims = pd.read_csv(results / "claims.csv")
        assert set(claims.verdict) <= {"holds", "does not hold", "inconclusive"}
        assert (claims.profile == "smoke").all()
        assert (claims.n_seeds == 2).all()  # the smoke profile's two meta-training seeds
    # 03 and 04 reuse 02's optimizers (one per meta-training seed) instead of training their own
    for seed in (0, 1):
        assert (smoke_build / "results" / "02_mnist" / f"lstm-seed{seed}.pt").is_file()
    assert not list((smoke_build / "results" / "03_architectures").glob("lstm*.pt"))
    timings = pd.read_csv(smoke_build / "timings.csv")
    assert list(timings.notebook) == list(reproduce.NOTEBOOKS)


def test_errata_and_long_horizon_chapters_write_their_tables(smoke_build):
    errata = pd.read_csv(smoke_build / "results" / "08_errata" / "errata.csv")
    assert {d[:3] for d in errata.defect} == {"(a)", "(b)", "(c)", "(d)"}
    assert set(errata["survives the fix"]) <= {"yes", "no", "uncertain"}
    # errata reuse the chapters' runs and 02's LSTM rather than re-running them
    assert not list((smoke_build / "results" / "08_errata").glob("lstm-seed*.pt"))
    horizons = smoke_build / "results" / "09_long_horizons"
    costs = pd.read_csv(horizons / "costs.csv")
    assert (costs.seconds_per_step > 0).all() and set(costs.optimizer) == {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
    assert pd.read_csv(horizons / "advantage.csv").verdict.isin(
        ["LSTM better", "baseline better", "no significant difference"]).all()
    html = smoke_build / "site" / "_build" / "html" / "book" / "experiments"
    for name, n_figures in (("08_errata", 4), ("09_long_horizons", 2)):
        page = (html / f"{name}.html").read_text()
        assert len(re.findall(r'<img[^>]+src="([^"]+\.png)"', page)) >= n_figures, name


def test_book_pages_show_figures_and_the_conclusions_table(smoke_build):
    html = smoke_build / "site" / "_build" / "html"
    for name in ("01_quadratic", "02_mnist", "03_architectures", "04_relu"):
        page = (html / "book" / "experiments" / f"{name}.html").read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
        assert images, name
        for src in images:
            assert (html / "book" / "experiments" / src).resolve().is_file(), src
        assert "Claim check" in page and "verdict" in page
    conclusions = (html / "book" / "experiments" / "90_conclusions.html").read_text()
    assert conclusions.count("<tr") >= 1 + 5  # header + every claim of experiments 1-4 (smoke: no step-200 claim)
    for page in ("intro", "related_work", "method"):
        assert (html / "book" / f"{page}.html").is_file()


def test_a_page_shows_one_parameters_cell_with_no_path_of_this_machine(smoke_build):
    import nbformat

    nb = nbformat.read(smoke_build / "executed" / "02_mnist.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum("injected-parameters" in t for t in tags) == 1
    assert all("remove-cell" in t for t in tags if "parameters" in t)  # the defaults: in the source, not the page
    page = (smoke_build / "site" / "_build" / "html" / "book" / "experiments" / "02_mnist.html").read_text()
    assert "results_dir" in page and str(smoke_build) not in page and str(Path.home()) not in page


def test_rerun_skips_notebooks_whose_inputs_did_not_change(smoke_build):
    timings = reproduce.run_notebooks("smoke", smoke_build, only=["01_quadratic", "02_mnist"])
    assert list(timings.notebook) == list(reproduce.NOTEBOOKS)  # other rows kept from the last run
    assert list(timings.status[:2]) == ["up to date (skipped)"] * 2
    # a different parameter (device is part of the stamp) would re-run; a changed upstream stamp too
    stamps = reproduce.json.loads((smoke_build / "stamps.json").read_text())
    assert set(stamps) == set(reproduce.NOTEBOOKS)


def test_two_runs_verdicts_side_by_side_flag_every_difference(smoke_build, tmp_path):
    from l2l_core.book import report, reproduction

    table = report.verdict_table(smoke_build / "results")
    claims = report.collect_claims(smoke_build / "results")
    errata = pd.read_csv(smoke_build / "results" / "08_errata" / "errata.csv")
    assert (table.part == "claims").sum() == len(claims) and len(table) == len(claims) + len(errata)
    other = table.copy()
    other.loc[3, "verdict"] = "flipped"
    side = report.compare_verdicts(table, other, labels=("a", "b"))
    assert len(side) == len(table) and list(side["same verdict"] != "yes").count(True) == 1
    assert side.loc[side["same verdict"] == "NO", "verdict (b)"].item() == "flipped"
    subprocess.run([sys.executable, "tools/compare_runs.py", str(smoke_build / "results"), str(smoke_build / "results"),
                    "--labels", "a", "b", "--save", str(tmp_path), "--note", "same run twice"],
                   check=True, cwd=reproduce.REPO_ROOT, capture_output=True)
    stored, info = reproduction.rounding_check(tmp_path)
    assert info["differ"] == 0 and info["note"] == "same run twice" and (stored["same verdict"] == "yes").all()
    assert reproduction.rounding_check(tmp_path / "absent") is None


def test_a_runs_verdicts_are_decided_again_as_the_book_decided_them(smoke_build, tmp_path):
    from l2l_core.book import report, reproduction

    from l2l_core.experiments.verdicts import run_verdict_tables

    claims, errata = run_verdict_tables(smoke_build / "results")
    table = report.verdict_table(smoke_build / "results")
    book = table[(table.part == "claims") & (table.verdict != "not run")]
    assert [(l["experiment"], l["setting"], l["claim"]) for l in claims.labels] == \
        list(zip(book.experiment, book.setting, book.claim))
    every_seed = list(range(claims.data[0].lstm.shape[0]))
    assert claims.verdicts(every_seed) == list(book.verdict)
    decided = errata.verdicts(every_seed)  # with defect, fixed for each row of the errata table
    assert [f"{a} / {b}" for a, b in zip(decided[::2], decided[1::2])] == list(table[table.part != "claims"].verdict)
    results = str(smoke_build / "results")
    subprocess.run([sys.executable, "tools/verdict_stability.py", results, results,
                    "--draws", "4", "--save", str(tmp_path), "--note", "same run twice"],
                   check=True, cwd=reproduce.REPO_ROOT, capture_output=True)
    shown, info = reproduction.verdict_stability(tmp_path)
    assert info["note"] == "same run twice" and info["verdicts"] == {"claims": len(claims.data), "errata": len(decided)}
    assert len(shown) == len(claims.data) + len(decided)  # one row per verdict (no joint "all agree" figure)
    # two distinct seeds, each in two versions (the same run twice): disjoint halves of one seed, 2 x 2 pairs
    assert info["pairs"] == {"agree (rounding pairs of 2)": 2, "agree (halves of 1)": 4}
    assert shown["agree (halves of 1)"].str.endswith("%").all()
    assert reproduction.verdict_stability(tmp_path / "absent") is None


def test_the_claims_view_splits_the_numbers_into_columns_and_keeps_why_a_claim_did_not_run():
    from l2l_core.book.pages import claims_view
    from l2l_core.evaluation.claims import Claim, Part, check_claims
    from test_claims import synth  # tests/ is on sys.path (rootdir conftest, no package)

    frame, _, _ = synth(-0.05, {"Adam": 0.0, "SGD": 0.1})
    claims = [Claim("x", "c", "thesis text", "slide 3", [Part("better")], metric="loss@2", setting="A"),
              Claim("x", "c", "t", "s", [Part("better")], setting="B")]
    table = check_claims(frame.assign(setting="A"), claims, skipped={"B": "data set absent"})
    view = claims_view(table)
    ran, skipped = view.iloc[0], view.iloc[1]
    row = table.iloc[0]
    one_line = lambda text: text.replace("\u00a0", " ")  # intervals are kept on one line by no-break spaces
    assert one_line(ran["LSTM"]) == f"{row.lstm:.3g} [{row.lstm_lo:.3g}, {row.lstm_hi:.3g}]"
    pct = lambda x: f"{100 * x:+.1f}"
    assert one_line(ran["distance, % [95% CI]"]) == \
        f"{pct(row.distance)} [{pct(row.distance_lo)}, {pct(row.distance_hi)}] vs {row.binding}"
    assert one_line(ran["re-run interval, %"]) == f"{pct(row.distance)} [{pct(row.seed_lo)}, {pct(row.seed_hi)}]"
    assert " " not in ran["LSTM"] + ran["distance, % [95% CI]"] + ran["re-run interval, %"]
    per_seed = [float(x) for x in ran["per seed, %"].split()]  # each seed's distance, sorted, in percent
    assert per_seed == sorted(per_seed) and len(per_seed) == row.n_seeds
    assert (ran["diverged runs"], ran["verdict"]) == ("0", row.verdict)
    assert (skipped["LSTM"], skipped["distance, % [95% CI]"], skipped["verdict"]) == ("", "", "not run")
    assert skipped["test"] == f"{table.iloc[1].test} (data set absent)"
    assert "ours" not in view and "thesis" not in claims_view(table, sources=False)


def test_the_stuck_rate_note_counts_stuck_runs_and_names_an_unfinished_measurement(tmp_path):
    import json

    from l2l_core.book.pages import stuck_rate_note
    from l2l_core.experiments.settings import settings
    from l2l_core.evaluation.stats import binomial_ci

    s = settings("02_mnist", "mlp", "smoke", restarts=2)
    pd.DataFrame({"meta_seed": [5, 6, 7, 8], "stuck": [True, False, True, False]}).to_csv(tmp_path / "stuck-fam.csv")
    (tmp_path / "provenance-fam.json").write_text(json.dumps(dict(
        family="fam", profile="full", trajectories_per_epoch=20, n_val_tasks=10, machine={"CPU": "Some CPU"},
        code_commit="abcdef0123")))
    text = stuck_rate_note(s, tmp_path).data
    lo, hi = binomial_ci(2, 4)
    assert "**2 of 4**" in text and "seeds 5-8" in text and f"[{lo:.2f}, {hi:.2f}]" in text
    assert f"all 3 attempts of one seed would be stuck with probability {0.5 ** 3:.2g}" in text
    assert "Some CPU" in text and "abcdef0" in text
    (tmp_path / "provenance-fam.json").unlink()
    assert "no provenance file" in stuck_rate_note(s, tmp_path).data
    assert stuck_rate_note(s, tmp_path / "nothing") is None


@pytest.mark.slow
def test_notebooks_run_in_this_interpreter_whatever_a_python3_kernelspec_names(tmp_path, monkeypatch):
    """A user's own "python3" kernelspec (found first on JUPYTER_PATH) must not choose the notebooks' interpreter:
    the kernels built before the notebooks are found only from the same interpreter path."""
    import nbformat
    import papermill

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": "elsewhere",
                                                  "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import sys; open({str(tmp_path / 'which')!r}, 'w').write(sys.executable)")])
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               progress_bar=False, kernel_manager_class=notebook_run.local_kernel_manager())
    assert (tmp_path / "which").read_text() == sys.executable


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None or not os.path.exists("/proc/self/maps"),
                    reason="Triton is not installed here (nothing to keep out), or no /proc to read the maps from")
def test_the_notebooks_kernels_make_optimizers_without_loading_triton(tmp_path):
    """torch.optim's first optimizer imports torch._dynamo, which loads Triton when installed; the book's kernels
    keep it out (~77 MB each) and optimizers still work."""
    import nbformat
    import papermill

    code = ("import torch; p = torch.ones(2, requires_grad=True); opt = torch.optim.SGD([p], lr=0.5)\n"
            "p.sum().backward(); opt.step()\n"
            "import sys; assert 'torch._dynamo' in sys.modules\n"
            f"open({str(tmp_path / 'result')!r}, 'w').write(repr((p.tolist(), 'libtriton' in open('/proc/self/maps').read())))")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               progress_bar=False, kernel_manager_class=notebook_run.local_kernel_manager())
    assert (tmp_path / "result").read_text() == repr(([0.5, 0.5], False))  # 1 - 0.5 * 1, exact


def test_the_kernels_are_built_before_the_notebooks_and_say_when_they_are_off(monkeypatch):
    monkeypatch.setenv("L2L_FUSED", "0")
    assert notebook_run.build_kernels().startswith("[reproduce] fused kernels: switched off by L2L_FUSED=0 (")


def test_a_new_stored_measurement_reruns_only_the_notebooks_that_show_it(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("torch\n")
    (tmp_path / "l2l_core").mkdir()
    (tmp_path / "notebooks").mkdir()
    for name in ("02_mnist", "03_architectures"):
        (tmp_path / "notebooks" / f"{name}.ipynb").write_bytes((reproduce.NOTEBOOK_DIR / f"{name}.ipynb").read_bytes())
    monkeypatch.setattr(reproduce, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", tmp_path / "notebooks")
    stamps = lambda: {name: reproduce.input_stamp(name, {}, {}) for name in ("02_mnist", "03_architectures")}
    before = stamps()
    folder = tmp_path / "book" / "data" / "stuck_rate"
    folder.mkdir(parents=True)
    (folder / "stuck-x.csv").write_text("meta_seed,stuck\n5,True\n")
    after = stamps()
    assert after["02_mnist"] != before["02_mnist"] and after["03_architectures"] == before["03_architectures"]
    (folder / "stuck-x.csv").write_text("meta_seed,stuck\n5,False\n")
    assert stamps()["02_mnist"] != after["02_mnist"]


_ALLOCATE = """
import sys, time
sys.stdout.write("ready\\n"); sys.stdout.flush()
time.sleep(1.0)
block = bytearray(b"\\x01") * (300 << 20)  # 300 MB, written: resident and private
time.sleep(2.0)
del block
time.sleep(1.5)
"""


@pytest.mark.parametrize("exact_every", [1, 10_000])
def test_tree_memory_sees_a_childs_peak_between_exact_readings(exact_every):
    """A child's 300 MB held for 2 s is in the peak whether PSS is read at every sample or only at the child's first
    (then RSS changes carry the estimate): the cheap samples between exact readings must not miss it."""
    with runtime_memory.TreeMemory(interval=0.1, exact_every=exact_every) as memory:
        child = subprocess.Popen([sys.executable, "-c", _ALLOCATE], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        baseline = [memory._sample()[0] for _ in range(3)][-1]
        child.wait(timeout=60)
    assert memory.peak_mb - baseline > 280, (memory.peak_mb, baseline)


_MAP_AND_READ = """
import mmap, sys, time
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # the go: by then the sampler has read this process once, before the file is mapped
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
sum(m[i] for i in range(0, len(m), 4096))  # every page resident in this process
sys.stdout.write("mapped\\n"); sys.stdout.flush()
time.sleep(2.0)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="PSS is read from /proc (Linux)")
def test_tree_memory_counts_a_file_two_children_map_once(tmp_path):
    """Two children reading the same 200 MB file share its pages: PSS counts them once in all (100 MB each), RSS
    twice. Between exact readings the estimate (RSS changes) counts them twice; the peak must not."""
    data = tmp_path / "shared.bin"
    data.write_bytes(b"\x01" * (200 << 20))
    with runtime_memory.TreeMemory(interval=0.1, exact_every=10_000) as memory:
        baseline = memory._sample(exact=True)[0]
        children = [subprocess.Popen([sys.executable, "-c", _MAP_AND_READ, str(data)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True) for _ in range(2)]
        assert [c.stdout.readline().strip() for c in children] == ["ready", "ready"]
        time.sleep(0.5)
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        assert [c.stdout.readline().strip() for c in children] == ["mapped", "mapped"]
        for c in children:
            c.wait(timeout=60)
    grew = memory.peak_mb - baseline
    assert 180 < grew < 300, (memory.peak_mb, baseline)  # once: 200 MB and two interpreters; twice would be 400+
