"""The chapter registry is the one list of chapters: _toc.yml and every notebook's parameters cell agree with it."""
import json
import re

import papermill
import yaml

from l2l_core.experiments.registry import CHAPTERS, SETUPS
from l2l_core.experiments.settings import REPO_ROOT
from l2l_core.runtime import reproduce


def test_the_table_of_contents_lists_the_registry_chapters_in_order_under_their_parts():
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    listed = [(part["caption"], chapter["file"]) for part in toc["parts"] for chapter in part["chapters"]
              if chapter["file"].startswith("book/experiments/")]
    assert listed == [(c.part, f"book/experiments/{c.name}") for c in CHAPTERS.values()]


def test_every_notebook_is_a_chapter_and_its_parameters_cell_is_the_registry_s():
    assert sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb")) == sorted(CHAPTERS)
    for name, chapter in CHAPTERS.items():
        declared = papermill.inspect_notebook(str(REPO_ROOT / "notebooks" / f"{name}.ipynb"))
        assert tuple(declared) == chapter.params, name


def test_each_experiment_notebook_takes_its_settings_from_the_registry():
    for name, chapter in CHAPTERS.items():
        cells = json.loads((REPO_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert not re.search(r"\bsettings\('", code), f"{name} declares its chapter's settings itself"
        if chapter.kind is not None:
            assert f"CHAPTERS['{name}'].settings(profile" in code, name


def test_make_reproduce_and_the_claims_read_the_registry():
    assert list(reproduce.NOTEBOOKS) == list(CHAPTERS)
    assert all(set(c.reads) <= set(CHAPTERS) for c in CHAPTERS.values())
    assert list(SETUPS) == [n for n, c in CHAPTERS.items() if c.setup is not None]
    for name, chapter in CHAPTERS.items():  # what make reproduce injects is what the notebook declares
        injected = reproduce.parameters(name, "smoke", REPO_ROOT / "build" / "x", "cpu")
        assert set(injected) <= set(chapter.params), name
