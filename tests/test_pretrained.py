"""The optimizer shipped with the package: it loads by name, knows where it comes from, and steps as recorded."""
import math

import pytest
import torch
from torch import nn

from l2l_core.optimizers import pretrained
from l2l_core.optimizers.drop_in import reference_run
from l2l_core.optimizers.drop_in import LearnedOptimizer


def test_mnist_is_shipped_with_its_provenance():
    assert "mnist" in pretrained.available()
    info = pretrained.provenance("mnist")
    assert info["training"]["init"] == "thesis" and info["trajectories"] > 0 and info["code"]["commit"]
    # every meta-training seed of the book is either shipped or listed with the reason it is not (stuck)
    assert len(info["meta_seeds"]) + len(info.get("not_shipped", {})) >= 5 and info["default_seed"] in info["meta_seeds"]
    assert all("stuck" in why for why in info.get("not_shipped", {}).values())
    assert not set(map(int, info.get("not_shipped", {}))) & set(info["meta_seeds"])
    best = min(info["seeds"].values(), key=lambda s: s["validation_summed_loss"])
    assert info["seeds"][str(info["default_seed"])] is best  # the default is chosen on validation, never on test
    for seed in info["meta_seeds"]:
        assert (pretrained.FOLDER / f"mnist-seed{seed}.pt").is_file()
        assert math.isfinite(info["seeds"][str(seed)]["held_out_summed_loss_100_steps"])
    assert {"SGD", "RMSprop", "Adam", "NAG"} == set(info["held_out_baselines_summed_loss_100_steps"])


@pytest.mark.parametrize("seed", pretrained.provenance("mnist")["meta_seeds"] if "mnist" in pretrained.available() else [])
def test_shipped_weights_reproduce_the_recorded_reference_run(seed):
    # float64 on the PyTorch path: rounding is ~1e-16 per operation and 20 steps of a 40-unit LSTM on a
    # 35-parameter model amplify it far less than 1e6-fold, so 1e-10 leaves room and still catches any other weights
    recorded = pretrained.provenance("mnist")["seeds"][str(seed)]["reference_run_losses"]
    got = reference_run(pretrained.load("mnist", seed))
    assert got == pytest.approx(recorded, rel=1e-10)
    assert got[-1] < got[0]  # the shipped LSTM does optimize the tiny model


def test_other_seeds_are_other_optimizers():
    info = pretrained.provenance("mnist")
    runs = [tuple(info["seeds"][str(s)]["reference_run_losses"]) for s in info["meta_seeds"]]
    assert len(set(runs)) == len(runs)


def test_learned_optimizer_loads_the_shipped_lstm_by_name():
    model = nn.Linear(3, 2)
    opt = LearnedOptimizer(model.parameters(), pretrained="mnist")
    default = pretrained.load("mnist")
    for a, b in zip(opt.lstm.state_dict().values(), default.state_dict().values()):
        assert torch.equal(a, b)
    seed = pretrained.provenance("mnist")["meta_seeds"][-1]
    other = LearnedOptimizer(model.parameters(), pretrained="mnist", meta_seed=seed)
    assert torch.equal(next(iter(other.lstm.state_dict().values())),
                       next(iter(pretrained.load("mnist", seed).state_dict().values())))


def test_bad_names_and_seeds_are_refused_with_the_allowed_values():
    params = nn.Linear(3, 2).parameters()
    with pytest.raises(ValueError, match="pretrained='cifar'.*'mnist'"):
        LearnedOptimizer(params, pretrained="cifar")
    with pytest.raises(ValueError, match="meta_seed=99 .*choose one of"):
        LearnedOptimizer(nn.Linear(3, 2).parameters(), pretrained="mnist", meta_seed=99)
    with pytest.raises(ValueError, match="exactly one of"):
        LearnedOptimizer(nn.Linear(3, 2).parameters(), pretrained="mnist", checkpoint="x.pt")
    with pytest.raises(ValueError, match="needs pretrained"):
        LearnedOptimizer(nn.Linear(3, 2).parameters(), checkpoint="x.pt", meta_seed=0)


def test_the_shipped_lstms_are_the_reference_runs_at_the_thesis_budget():
    from l2l_core.experiments.settings import REFERENCE_DIR, TRAINING

    info = pretrained.provenance("mnist")
    full = TRAINING["mlp"]["full"]
    assert info["trajectories"] == full["meta_epochs"] * full["trajectories_per_epoch"] == 2000  # the thesis code's
    for seed in info["meta_seeds"]:
        stored = REFERENCE_DIR / "lstms" / "02_mnist" / f"lstm-seed{seed}.pt"
        assert (pretrained.FOLDER / f"mnist-seed{seed}.pt").read_bytes() == stored.read_bytes()
        recorded = info["seeds"][str(seed)]["meta_training"]  # the reference run's provenance of that LSTM
        assert recorded["meta_seed"] == seed and recorded["training"]["meta_epochs"] == full["meta_epochs"]
        assert recorded["cpu"] and recorded["commit"]
