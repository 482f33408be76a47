"""The reference run's machinery on the smoke profile: a job is done only with its provenance, retraining in fresh
processes gives identical files, `compare` flags a difference, and `make reproduce` seeds a run with the stored
LSTMs without replacing a chapter's own."""
import os
import subprocess
import sys

import pytest
import torch

from l2l_core.experiments import reference
from l2l_core.experiments.settings import REPO_ROOT

ARMS = ["--arm", "01_quadratic", "--arm", "02_mnist"]


def _cli(*args, data_root, check=True):
    env = {**os.environ, "L2L_DATA_DIR": str(data_root), "L2L_SCHEDULER": "serial", "L2L_JOB_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "l2l_core.experiments.reference", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_mnist_module_root):
    """The smoke profile's quadratic and main MNIST LSTM of seed 0, trained twice, each in a fresh process."""
    runs = [tmp_path_factory.mktemp(f"run{i}") for i in range(2)]
    for out in runs:
        _cli("train", "--profile", "smoke", "--out", str(out), *ARMS, "--seeds", "0", data_root=tiny_mnist_module_root)
    return runs, tiny_mnist_module_root


def test_retraining_in_a_fresh_process_gives_identical_lstm_files(two_runs):
    (a, b), root = two_runs
    files = sorted(p.relative_to(a) for p in (a / "lstms").rglob("*.pt") if not p.name.startswith("training_state"))
    assert {str(f) for f in files} >= {"lstms/01_quadratic/lstm-seed0.pt", "lstms/02_mnist/lstm-seed0.pt"}
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    done = _cli("compare", "--out", str(b), "--against", str(a), data_root=root)
    assert f"{len(files)} of {len(files)} LSTM files identical" in done.stdout and "0 differ" in done.stdout


def test_compare_fails_when_an_lstm_of_the_same_machine_differs(two_runs, tmp_path):
    import shutil

    (a, b), root = two_runs
    changed = tmp_path / "changed"
    shutil.copytree(b, changed)
    path = changed / "lstms" / "01_quadratic" / "lstm-seed0.pt"
    blob = torch.load(path, weights_only=True)
    name = next(iter(blob["state_dict"]))
    blob["state_dict"][name] = blob["state_dict"][name] * (1 + 1e-6) + 1e-6  # another draw would differ more
    torch.save(blob, path)
    done = _cli("compare", "--out", str(changed), "--against", str(a), data_root=root, check=False)
    assert done.returncode == 1 and "1 differ although trained on the same machine" in done.stdout
    row = reference.compare(changed, a).set_index("file").loc["01_quadratic/lstm-seed0.pt"]
    assert not row["identical"] and row["same machine"] and 0 < row["largest relative difference"] < 1e-3


def test_a_job_without_its_provenance_is_not_done(two_runs, tmp_path):
    import shutil

    (a, _), _ = two_runs
    half = tmp_path / "half"
    shutil.copytree(a, half)
    (half / "lstms" / "02_mnist" / "provenance-lstm-seed0.json").unlink()  # killed after the LSTM, before provenance
    todo = {label: list(seeds) for _, seeds, label in
            reference.arm_plans(half, arms=("01_quadratic", "02_mnist"), seeds=[0], profile="smoke")}
    assert todo == {"01_quadratic": [], "02_mnist": [0]}


def test_reproduce_reuses_the_stored_lstms_and_keeps_a_chapters_own(two_runs, tmp_path):
    (a, _), _ = two_runs
    results = tmp_path / "build" / "lstms"  # laid out as a run's results folder: <chapter>/<files>
    (results / "02_mnist").mkdir(parents=True)
    own = results / "02_mnist" / "history-lstm-seed0.csv"
    own.write_text("a chapter's own file\n")
    copied = reference.copy_stored_lstms(results, out=a)
    assert own.read_text() == "a chapter's own file\n" and own not in copied
    assert results / "01_quadratic" / "lstm-seed0.pt" in copied
    assert not any(p.name.startswith("training_state") for p in copied)
    assert reference.copy_stored_lstms(results, out=a) == []  # nothing left to copy
    own.write_bytes((a / "lstms" / "02_mnist" / own.name).read_bytes())
    todo = [list(seeds) for _, seeds, _ in
            reference.arm_plans(results.parent, arms=("01_quadratic", "02_mnist"), seeds=[0], profile="smoke")]
    assert todo == [[], []]  # the chapters find every LSTM done: none is retrained


def test_the_reference_run_plans_every_lstm_the_books_profile_reads():
    # make reproduce trains nothing at the reference profile: a seed the book reads but the run never trains would be
    # a gap in the store, and one it trains but the book never reads wasted hours; the side arms (PyTorch init,
    # errata) take the main arm's first SIDE_ARM_META_SEEDS seeds
    from l2l_core.experiments.errata import errata_budget
    from l2l_core.experiments.settings import settings
    from l2l_core.experiments.setups import SIDE_ARM_META_SEEDS

    planned = {}
    for arm, seeds in reference.ORDER:
        planned.setdefault(arm, set()).update(seeds)
    main = settings("02_mnist", "mlp", reference.PROFILE).meta_seeds
    assert set(main) == planned["02_mnist"] and len(main) > SIDE_ARM_META_SEEDS  # and it trains no seed unread
    assert set(main[:SIDE_ARM_META_SEEDS]) == planned["02_mnist_pytorch_init"]
    assert set(settings("01_quadratic", "quadratic", reference.PROFILE).meta_seeds) == planned["01_quadratic"]
    errata = settings("08_errata", "mlp", reference.PROFILE)
    assert set(errata_budget(errata)["seeds"]) == planned["08_errata"]
    ten = settings("08_errata", "mlp", reference.PROFILE, meta_seeds=tuple(range(10)))
    assert errata_budget(ten)["seeds"] == tuple(range(SIDE_ARM_META_SEEDS))  # paired with the main arm's first five
