"""The scaling computation: jobs of a profile from its tables, list scheduling, expected wall time."""
import pytest

from l2l_core.runtime import scaling
from l2l_core.experiments.settings import TRAINING

RATES = dict(mlp_trajectory=3.0, mlp_lstm_step=0.005, mlp_baselines_step=0.001, quadratic_trajectory=0.02,
             quadratic_lstm_step=0.0002)


def test_longest_first_list_scheduling():
    assert scaling.makespan([3, 3, 2, 2, 2], 2) == 7     # 3+2+2 | 3+2
    assert scaling.makespan([5, 1, 1], 1) == 7
    assert scaling.makespan([5, 1, 1], 10) == 5
    assert scaling.makespan([], 4) == 0


def test_the_full_profile_has_the_thesis_budgets_as_jobs():
    inventory = scaling.job_inventory("full", RATES)
    mnist = inventory[(inventory.notebook == "02_mnist") & (inventory.what == "meta-train")]
    t = TRAINING["mlp"]["full"]
    from l2l_core.experiments.setups import SIDE_ARM_META_SEEDS

    assert len(mnist) == len(t["meta_seeds"]) + min(len(t["meta_seeds"]), SIDE_ARM_META_SEEDS)  # both inits' LSTMs
    trajectories = t["meta_epochs"] * t["trajectories_per_epoch"]
    validation = (t["meta_epochs"] + 1) * t["n_val_tasks"] * t["train_steps"] * RATES["mlp_lstm_step"]
    assert mnist.seconds.iloc[0] == pytest.approx(trajectories * RATES["mlp_trajectory"] + validation)
    # defects b (with and without preprocessing) and c, d (with the defect): one LSTM per side-arm seed each
    side = min(len(t["meta_seeds"]), SIDE_ARM_META_SEEDS)
    assert len(inventory[(inventory.notebook == "08_errata") & (inventory.what == "meta-train")]) == 4 * side


def test_more_cores_never_take_longer_and_never_beat_the_floor():
    table = scaling.scaling_table("full", RATES, cores=(2, 4, 16, 64))
    assert table.minutes.is_monotonic_decreasing
    assert (table.minutes >= table.floor_minutes - 1e-9).all()
    with pytest.raises(ValueError, match="rates lacks"):
        scaling.job_inventory("full", {"mlp_trajectory": 1.0})


def test_no_schedule_beats_the_bound_and_the_bound_is_the_work_or_the_longest_job():
    table = scaling.scaling_table("full", RATES, cores=(1, 2, 16, 1024))
    inventory = scaling.job_inventory("full", RATES)
    assert (table.minutes >= table.any_schedule_bound_minutes - 1e-9).all()
    assert (table.across_notebooks_minutes >= table.any_schedule_bound_minutes - 1e-9).all()
    assert table.any_schedule_bound_minutes.iloc[0] == pytest.approx(inventory.seconds.sum() / 60)  # one core
    assert table.any_schedule_bound_minutes.iloc[-1] == pytest.approx(inventory.seconds.max() / 60)  # many cores
