import numpy as np
import pytest
import torch

from l2l_core.tasks.data import CACHE_ENV, write_idx_images, write_idx_labels


@pytest.fixture(scope="session", autouse=True)
def _decoded_data_in_a_session_folder(tmp_path_factory):
    """Data sets decoded by the tests (most are tiny ones in temporary roots) are kept for this session only, not in
    the user's cache (~/.cache/l2l), which they would fill with files no later run can use."""
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("decoded-data")))
    yield
    mp.undo()


def write_tiny_mnist(root):
    """A tiny but real-format MNIST (idx files) under ``root``, 600 train / 200 test images; returns ``root``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        # images that carry their label, so a classifier can learn them
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, lab in enumerate(labels):
            images[i, lab * 2 : lab * 2 + 3, :] = 250
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def tiny_mnist_root(tmp_path):
    """A data root holding a tiny but real-format MNIST (``write_tiny_mnist``)."""
    return write_tiny_mnist(tmp_path)


@pytest.fixture(scope="module")
def tiny_mnist_module_root(tmp_path_factory):
    """``tiny_mnist_root`` shared by a module's tests (for module-scoped fixtures that train on it)."""
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny-mnist"))


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
