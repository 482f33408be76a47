"""Stored result tables: a run on the machine that stored them must equal them bit for bit, values of measured time
are left out, and on another machine the check reports how far each table moved and which verdicts changed."""
import json

import numpy as np
import pandas as pd
import pytest

from l2l_core.experiments import reference_tables
from l2l_core.experiments.registry import CHAPTERS
from l2l_core.experiments.reference_tables import executed_folder, read_table, table_files


@pytest.fixture
def run(tmp_path):
    """A results tree shaped like a chapter's: settings, per-task losses, claims, a horizon table, its timings."""
    chapter = tmp_path / "results" / "09_long_horizons"
    chapter.mkdir(parents=True)
    (chapter / "settings.json").write_text(json.dumps({"profile": "full", "n_tasks": 50, "results_dir": "/here"}))
    rng = np.random.default_rng(0)
    pd.DataFrame({"task": range(6), "step": 1, "loss": rng.random(6), "seconds": rng.random(6)}).to_parquet(
        chapter / "losses.parquet", index=False)
    pd.DataFrame({"claim": ["a", "b"], "distance": [-0.2, 0.1], "verdict": ["holds", "inconclusive"]}).to_csv(
        chapter / "claims.csv", index=False)
    pd.DataFrame({"comparison": ["steps 0-99", "same wall-clock as the LSTM's 100 steps (10.86 s)"],
                  "difference": [0.5, 0.25]}).to_csv(chapter / "advantage.csv", index=False)
    (chapter / "run.json").write_text(json.dumps({"seconds": 12.5}))
    pd.DataFrame({"optimizer": ["LSTM"], "seconds_per_step": [0.1]}).to_csv(chapter / "costs.csv", index=False)
    (chapter / "lstm-seed0.pt").write_bytes(b"not a table")
    (chapter / "history-lstm-seed0.csv").write_text("epoch,val_loss_sum\n0,1.0\n")
    (tmp_path / "executed").mkdir()
    for name in CHAPTERS:
        (tmp_path / "executed" / f"{name}.ipynb").write_text("{}")
    store = tmp_path / "reference"
    reference_tables.store_evaluation(tmp_path / "results", store)
    return tmp_path / "results", store, chapter


def _edit_csv(path, column, row, value):
    frame = pd.read_csv(path)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


def test_only_result_tables_are_stored(run):
    _, store, _ = run
    stored = sorted(p.name for p in (store / "tables" / "09_long_horizons").iterdir())
    assert stored == ["advantage.csv", "claims.csv", "losses.parquet", "settings.json"]
    assert json.loads((store / "tables" / "machine.json").read_text())["chapters"] == ["09_long_horizons"]
    assert sorted(p.stem for p in (store / "executed").iterdir()) == sorted(CHAPTERS)


def test_a_run_without_its_executed_notebooks_is_not_stored(run, tmp_path):
    results, _, _ = run
    (tmp_path / "executed" / "04_relu.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="04_relu"):
        reference_tables.store_evaluation(results, tmp_path / "again")


def test_the_book_folder_falls_back_to_the_stored_notebooks_only_for_build_full(tmp_path, monkeypatch):
    stored = tmp_path / "reference" / "executed"
    stored.mkdir(parents=True)
    monkeypatch.setattr(reference_tables, "REFERENCE_DIR", tmp_path / "reference")
    monkeypatch.setattr(reference_tables, "REPO_ROOT", tmp_path)
    assert executed_folder(tmp_path / "build" / "full", CHAPTERS) == stored  # clean clone: nothing executed yet
    assert executed_folder(tmp_path / "build" / "quick", CHAPTERS) == tmp_path / "build" / "quick" / "executed"
    own = tmp_path / "build" / "full" / "executed"
    own.mkdir(parents=True)
    for name in CHAPTERS:
        (own / f"{name}.ipynb").write_text("{}")
    assert executed_folder(tmp_path / "build" / "full", CHAPTERS) == own  # a finished make reproduce: its own book


def test_the_same_run_on_the_same_machine_is_identical(run, capsys):
    results, store, _ = run
    assert reference_tables.check_tables(results, store) == 0
    assert "4 of 4 tables identical" in capsys.readouterr().out


def test_measured_time_is_not_compared(run):
    results, store, chapter = run
    _edit_csv(chapter / "advantage.csv", "difference", 1, 0.3)  # the wall-clock row
    losses = pd.read_parquet(chapter / "losses.parquet")
    losses.assign(seconds=losses.seconds + 1).to_parquet(chapter / "losses.parquet", index=False)
    (chapter / "run.json").write_text(json.dumps({"seconds": 99.0}))
    settings = json.loads((chapter / "settings.json").read_text())
    (chapter / "settings.json").write_text(json.dumps({**settings, "results_dir": "/elsewhere"}))
    assert reference_tables.check_tables(results, store) == 0


def test_one_ulp_on_the_same_machine_fails(run, capsys):
    results, store, chapter = run
    losses = pd.read_parquet(chapter / "losses.parquet")
    losses.loc[3, "loss"] = np.nextafter(losses.loc[3, "loss"], 2.0)
    losses.to_parquet(chapter / "losses.parquet", index=False)
    assert reference_tables.check_tables(results, store) == 1
    assert "3 of 4 tables identical" in capsys.readouterr().out


def test_another_machine_reports_the_difference_and_the_changed_verdicts(run, tmp_path):
    results, store, chapter = run
    machine = store / "tables" / "machine.json"
    machine.write_text(json.dumps({**json.loads(machine.read_text()), "cpu": "another CPU"}))
    _edit_csv(chapter / "claims.csv", "distance", 1, 0.11)
    _edit_csv(chapter / "claims.csv", "verdict", 1, "holds")
    assert reference_tables.check_tables(results, store, save=tmp_path / "check.csv") == 0
    table = pd.read_csv(tmp_path / "check.csv").set_index("table")
    row = table.loc["09_long_horizons/claims.csv"]
    assert not row.identical and row["verdicts changed"] == 1
    assert row["largest relative difference"] == pytest.approx(0.01 / 0.2)  # |0.11 - 0.1| / max |stored distance|
    assert table.loc["09_long_horizons/losses.parquet", "identical"]


def test_a_missing_table_is_reported(run, tmp_path):
    results, store, chapter = run
    (chapter / "claims.csv").unlink()
    assert reference_tables.check_tables(results, store, save=tmp_path / "check.csv") == 1
    assert "missing" in pd.read_csv(tmp_path / "check.csv").set_index("table").loc["09_long_horizons/claims.csv", "note"]


def test_table_files_skip_lstms_and_timings(run):
    _, _, chapter = run
    assert [p.name for p in table_files(chapter)] == ["advantage.csv", "claims.csv", "losses.parquet", "settings.json"]
    assert "seconds" not in read_table(chapter / "losses.parquet")
    assert len(read_table(chapter / "advantage.csv")) == 1
