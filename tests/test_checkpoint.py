import pytest
import torch

from l2l_core.optimizers.checkpoint import load_optimizer, save_optimizer
from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer


def test_round_trip_keeps_weights_config_seed_and_version(tmp_path):
    lstm = LSTMOptimizer(LSTMConfig(preprocess=False, output_scale=1.0), seed=7)
    path = save_optimizer(tmp_path / "opt.pt", lstm, seed=7, family="quadratic")
    loaded, info = load_optimizer(path)
    assert loaded.config == lstm.config
    assert info["seed"] == 7 and info["metadata"]["family"] == "quadratic"
    assert info["version"]
    g = torch.randn(5)
    torch.testing.assert_close(loaded(g, loaded.initial_state(5))[0], lstm(g, lstm.initial_state(5))[0])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_truncated_or_foreign_or_missing_checkpoint_is_explained(tmp_path):
    path = save_optimizer(tmp_path / "opt.pt", LSTMOptimizer(), seed=0)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_optimizer(tmp_path / "cut.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an l2l optimizer checkpoint"):
        load_optimizer(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_optimizer(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="was expected"):
        load_optimizer(path, expect_config=LSTMConfig(preprocess=False))
