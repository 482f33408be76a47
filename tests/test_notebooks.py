"""The notebooks in notebooks/ are the source of the book: clean, parameterised, and in the chapter graph."""
import json

import pytest

from l2l_core.experiments.settings import PROFILES
from l2l_core.runtime import reproduce
from l2l_core.runtime.reproduce import NOTEBOOK_DIR, NOTEBOOKS, check_parameters, parameters

SOURCES = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_every_notebook_is_a_chapter_and_every_chapter_a_notebook():
    assert [p.stem for p in SOURCES] == sorted(NOTEBOOKS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_a_source_notebook_is_clean_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "clear the outputs"
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"]) == 1


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_what_make_reproduce_injects_is_declared_by_the_notebook(name, profile, tmp_path):
    check_parameters(name, parameters(name, profile, tmp_path, "cpu", relative_to=tmp_path))
    with pytest.raises(ValueError, match="not parameters of notebook"):
        check_parameters(name, {"no_such_knob": 1})


@pytest.mark.slow
def test_chapter_2_runs_another_network_and_unroll_from_its_parameters_alone(tmp_path):
    """The issue's test of a notebook a reader can change: hidden=[12], unroll=5 through papermill, no library edit."""
    import pandas as pd
    import papermill

    results = tmp_path / "results" / "02_mnist"
    papermill.execute_notebook(str(NOTEBOOK_DIR / "02_mnist.ipynb"), str(tmp_path / "02.ipynb"), cwd=str(tmp_path),
                               parameters={"profile": "smoke", "results_dir": str(results), "hidden": [12],
                                           "unroll": 5}, kernel_name="python3", progress_bar=False)
    claims = pd.read_csv(results / "claims.csv")
    assert set(claims.setting) == {"MNIST 784-12-10 sigmoid", "MNIST 784-12-10 sigmoid (pytorch init)"}
    assert json.loads((results / "settings.json").read_text())["unroll"] == 5
    assert set(pd.read_csv(results / "tuning.csv").setting) == set(claims.setting)


def test_make_reproduce_params_reach_only_the_notebooks_that_declare_them():
    overrides = reproduce.parse_overrides(["n_tasks=20", "meta_seeds=[0, 1]", "init=pytorch", "hidden=[10,10]"])
    assert overrides == {"n_tasks": 20, "meta_seeds": [0, 1], "init": "pytorch", "hidden": [10, 10]}
    per_notebook = reproduce.overrides_for(["01_quadratic", "02_mnist"], overrides)
    assert per_notebook["02_mnist"] == overrides
    assert per_notebook["01_quadratic"] == {"n_tasks": 20, "meta_seeds": [0, 1]}  # 01 has no init, no hidden


@pytest.mark.parametrize("items, message", [(["n_tasks"], "not NAME=VALUE"), (["hidden=[10]"], "none of the notebooks"),
                                            (["profile=quick"], "PROFILE=")])
def test_make_reproduce_refuses_a_param_it_cannot_apply(items, message):
    with pytest.raises(ValueError, match=message):
        reproduce.overrides_for(["04_relu"], reproduce.parse_overrides(items))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_no_notebook_line_is_cut_off_at_the_cells_right_edge(path):
    """A page shows a code cell's lines unwrapped: at most 100 characters each (markdown too, but for table rows,
    which a table cannot wrap)."""
    import nbformat

    long = [(i, len(line)) for i, cell in enumerate(nbformat.read(path, as_version=4).cells)
            for line in cell.source.splitlines()
            if len(line) > 100 and not (cell.cell_type == "markdown" and line.lstrip().startswith("|"))]
    assert not long, f"{path.name}: (cell, length) of lines over 100 characters: {long}"


def test_a_partial_run_into_a_new_folder_skips_the_book_and_says_why(tmp_path, monkeypatch, capsys):
    # make reproduce ONLY=... into a fresh build folder: its notebooks ran, but the book needs every chapter's
    ran, build_book = [], reproduce.build_book
    monkeypatch.setattr(reproduce, "run_notebooks", lambda profile, out, *args: ran.append(out) or None)
    monkeypatch.setattr(reproduce, "build_book", lambda out: pytest.fail("the book was built without its notebooks"))
    reproduce.main(["--profile", "smoke", "--out", str(tmp_path / "build"), "--only", "04_relu"])
    printed = capsys.readouterr().out
    assert ran and "book not built" in printed and "01_quadratic" in printed and "book: not built" in printed
    with pytest.raises(FileNotFoundError, match="executed notebooks missing"):  # the whole run still insists on it
        build_book(tmp_path / "build")
