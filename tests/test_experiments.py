import json

import pandas as pd
import pytest
import torch

from l2l_core.experiments import protocol as experiment, lstms, settings
from l2l_core.experiments.settings import PROFILES
from l2l_core.evaluation.claims import Claim, Part
from l2l_core.tasks.families import QuadraticFamily


def test_settings_take_the_profile_and_overrides(tmp_path):
    s = settings.settings("01_quadratic", "quadratic", "quick", n_tasks=7, results_dir=tmp_path)
    assert s.n_tasks == 7 and s.seeds == settings.EVALUATION["quadratic"]["quick"]["seeds"]
    assert s.meta_epochs == settings.TRAINING["quadratic"]["quick"]["meta_epochs"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(profile="fast"), "profile='fast'"),
    (dict(device="tpu"), "device='tpu'"),
    (dict(seeds=3), "seeds=3"),
    (dict(seeds=[0, -1]), "seeds"),
    (dict(n_tasks=0), "n_tasks=0"),
    (dict(steps=-5), "steps=-5"),
    (dict(meta_lr=0.0), "meta_lr=0.0"),
    (dict(data_root="/no/such/folder"), "data_root='/no/such/folder'"),
    (dict(n_task=3), "unknown setting"),
])
def test_bad_settings_are_named(kwargs, match):
    args = {"profile": "smoke", **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        settings.settings("01_quadratic", "quadratic", **args)


def test_missing_data_set_is_reported_as_not_run(tiny_mnist_root, tmp_path):
    """SVHN absent: the experiment still runs, and its claim row says 'not run' with the reason."""
    s = settings.settings("06_cifar_svhn", "mlp", "smoke", data_root=str(tiny_mnist_root), results_dir=tmp_path / "06")
    svhn = settings.mlp_family(s, dataset="svhn")
    claim = Claim("06", "no advantage on SVHN", "thesis", "slides", (Part("no_advantage"),), metric="sum@100",
                     setting=settings.setting_label(svhn))
    result = experiment.run_experiment(s, [settings.mlp_family(s), svhn], [claim], progress=False)
    row = result.claims.iloc[0]
    assert row.verdict == "not run" and "SVHN" in row.ours
    assert set(result.frame.setting) == {"MNIST 784-20-10 sigmoid"}
    run = json.loads((tmp_path / "06" / "run.json").read_text())
    assert "SVHN 3072-20-10 sigmoid" in run["skipped"] and run["peak_rss_mb"] > 0


def test_seed_lstms_are_reused_only_for_the_same_training_settings(tmp_path):
    fam = QuadraticFamily()
    s = settings.settings("q", "quadratic", "smoke", results_dir=tmp_path)
    first = lstms.train_seeds(fam, s, tmp_path, progress=False)
    assert sorted(first.lstms) == list(s.meta_seeds) and sorted(first.history.meta_seed.unique()) == list(s.meta_seeds)
    assert (first.history.trajectories == first.history.epoch * s.trajectories_per_epoch).all()
    again = lstms.train_seeds(fam, s, tmp_path, progress=False)
    for seed in s.meta_seeds:
        for a, b in zip(first.lstms[seed].parameters(), again.lstms[seed].parameters()):
            assert (a == b).all()
    # two seeds train two different LSTMs
    assert any((a != b).any() for a, b in zip(first.lstms[0].parameters(), first.lstms[1].parameters()))
    other = settings.settings("q", "quadratic", "smoke", results_dir=tmp_path, meta_lr=0.01)
    retrained = lstms.train_seeds(fam, other, tmp_path, progress=False)
    assert any((a != b).any() for a, b in zip(first.lstms[0].parameters(), retrained.lstms[0].parameters()))


def test_seed_lstms_that_learned_below_their_restart_cap_are_reused_under_a_higher_cap(tmp_path):
    """The profiles' cap was raised after runs whose LSTMs mostly learned at once: those files are kept, a seed
    that ended at its cap (maybe stuck) is trained again."""
    fam = QuadraticFamily()
    low = settings.settings("q", "quadratic", "smoke", results_dir=tmp_path, restarts=1)
    high = settings.settings("q", "quadratic", "smoke", results_dir=tmp_path, restarts=3)
    first = lstms.train_seeds(fam, low, tmp_path, progress=False)
    assert set(first.history.attempt) == {0}  # smoke's quadratic LSTMs learn in their first epoch
    job = lstms.SeedJob(fam, high, tmp_path.resolve(), "lstm", high.training(), None, None, high.meta_epochs, (), False)
    assert all(job.done(seed) for seed in high.meta_seeds)
    history = tmp_path / "history-lstm-seed0.csv"  # as if seed 0 had ended on its cap: attempt 1 of 1
    pd.read_csv(history).assign(attempt=1).to_csv(history, index=False)
    assert not job.done(0) and job.done(1)
    assert not lstms.SeedJob(fam, low, tmp_path.resolve(), "lstm", {**low.training(), "unroll": 5}, None, None,
                             low.meta_epochs, (), False).done(1)  # any other setting still retrains


def test_a_smaller_budget_selects_what_a_shorter_run_selects(tmp_path):
    """The snapshot kept at B trajectories equals the best LSTM of a run given only B trajectories."""
    fam = QuadraticFamily()
    s = settings.settings("q", "quadratic", "smoke", results_dir=tmp_path, meta_seeds=[3], meta_epochs=3)
    long = lstms.train_seeds(fam, s, tmp_path / "long", progress=False, snapshot_budgets=(4,))
    short = lstms.train_seeds(fam, s, tmp_path / "short", progress=False, trajectories=4)
    for a, b in zip(long.at_budget[4][3].parameters(), short.lstms[3].parameters()):
        assert torch.equal(a, b)


def test_notebook_parameter_typos_are_refused_before_running():
    from l2l_core.runtime.reproduce import check_parameters

    check_parameters("02_mnist", {"profile": "smoke", "n_tasks": 3})
    with pytest.raises(ValueError, match=r"\['n_task'\] are not parameters of notebook '02_mnist'.*n_tasks"):
        check_parameters("02_mnist", {"profile": "smoke", "n_task": 3})
    with pytest.raises(ValueError, match="notebook='07_x'"):
        check_parameters("07_x", {})


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_has_a_note_that_counts_its_lstms_and_tasks(profile):
    from l2l_core.book.pages import profile_note

    s = settings.settings("02_mnist", "mlp", profile)
    text = profile_note(s).data
    assert f"Profile `{profile}`" in text
    assert f"{len(s.meta_seeds)} LSTMs (one per meta-training seed)" in text
    assert f"{len(s.seeds) * s.n_tasks} held-out task" in text
