"""Reusing a chapter's tuned rates: read back exactly what the chapter chose, and only when it matches."""
import pandas as pd
import pytest

from l2l_core.experiments import settings
from l2l_core.experiments import reuse
from l2l_core.errata.defects import as_tuned_by_sgd
from l2l_core.evaluation.tuning import tune_all, tuning_from_table
from l2l_core.io import read_frame, write_frame, write_json
from l2l_core.tasks.families import QuadraticFamily


def _chapter_tuning(tmp_path, family, s):
    """Write a tuning table the way the experiment chapters do, in the 03_architectures folder."""
    tuned = tune_all(family, n_tasks=3, steps=10, seed=s.seed)
    label = settings.setting_label(family)
    table = pd.concat([r.table.assign(setting=label, chosen=r.table.lr == r.lr) for r in tuned.values()])
    folder = tmp_path / "03_architectures"
    write_frame(table, folder / "tuning.csv")
    write_json(s.to_dict(), folder / "settings.json")
    return tuned


def test_tuning_table_round_trips_through_csv(tmp_path):
    fam = QuadraticFamily()
    tuned = tune_all(fam, n_tasks=3, steps=10)
    table = pd.concat([r.table.assign(setting="q", chosen=r.table.lr == r.lr) for r in tuned.values()])
    write_frame(table, tmp_path / "tuning.csv")
    back = tuning_from_table(read_frame(tmp_path / "tuning.csv"))
    assert {k: v.lr for k, v in back.items()} == {k: v.lr for k, v in tuned.items()}
    for name in tuned:
        pd.testing.assert_frame_equal(back[name].table, tuned[name].table[["optimizer", "lr", "loss_sum"]])
    bug = as_tuned_by_sgd(back)
    assert bug["adam"].lr == bug["rmsprop"].lr == tuned["sgd"].lr and bug["nag"].lr == tuned["nag"].lr


def test_tuned_baselines_reads_a_matching_chapter_and_tunes_otherwise(tmp_path, monkeypatch):
    fam = QuadraticFamily()
    s = settings.settings("09_long_horizons", "quadratic", "smoke", results_dir=tmp_path / "09_long_horizons")
    chapter = _chapter_tuning(tmp_path, fam, s)
    calls = []
    monkeypatch.setattr(reuse, "tune_all", lambda *a, **k: calls.append(k) or {"tuned": "here"})
    got = reuse.tuned_baselines(s, fam)
    assert not calls and {k: v.lr for k, v in got.items()} == {k: v.lr for k, v in chapter.items()}
    other = settings.settings("09_long_horizons", "quadratic", "smoke", seed=1, results_dir=tmp_path / "09_long_horizons")
    assert reuse.tuned_baselines(other, fam) == {"tuned": "here"}  # another tuning seed: tuned again
    assert calls == [dict(n_tasks=other.tune_tasks, steps=other.tune_steps, seed=1)]


def test_tuning_table_with_two_chosen_rates_is_refused():
    table = pd.DataFrame({"optimizer": ["SGD", "SGD"], "lr": [0.1, 0.01], "loss_sum": [1.0, 1.0], "chosen": [True, True]})
    with pytest.raises(ValueError, match="marks 2 rates"):
        tuning_from_table(table)


def test_notebooks_that_reuse_chapters_declare_every_chapter_they_may_read():
    """A notebook reading another chapter's results must list it upstream, so that a change there re-runs it."""
    from l2l_core.runtime.reproduce import NOTEBOOKS
    from l2l_core.experiments.reuse import CHAPTERS

    for name in ("08_errata", "09_long_horizons"):  # chapter_frame / tuned_baselines look in every one of CHAPTERS
        assert set(CHAPTERS) <= set(NOTEBOOKS[name]), name
    for name, upstream in NOTEBOOKS.items():
        assert all(list(NOTEBOOKS).index(u) < list(NOTEBOOKS).index(name) for u in upstream), name


def test_a_chapter_reads_another_chapters_results_but_never_writes_them(tmp_path):
    from l2l_core.experiments import setups as chapters, settings
    from l2l_core.experiments.reuse import chapter_frame

    s = settings.settings("03_architectures", "mlp", "smoke", results_dir=tmp_path / "03_architectures")
    with pytest.raises(FileNotFoundError, match=r"run notebooks/02_mnist\.ipynb with the same parameters"):
        chapters.mnist_lstms(s, progress=False)
    with pytest.raises(FileNotFoundError, match=r"chapter 05_mnist_like's results .* missing; run notebooks/05"):
        chapter_frame(s, "05_mnist_like")
    assert not (tmp_path / "02_mnist").exists() and not (tmp_path / "05_mnist_like").exists()
