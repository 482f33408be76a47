"""Tests for l2l_core.tasks.data: every loader on tiny files in torchvision's layout, root resolution, errors, meta splits."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from l2l_core.tasks import data as D

SHARED = Path("/work/shared/data")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No test sees the caller's L2L_DATA_DIR or a previous test's cached data."""
    monkeypatch.delenv("L2L_DATA_DIR", raising=False)
    D.clear_cache()
    yield
    D.clear_cache()


def _images(n: int, shape=(28, 28), seed: int = 0) -> np.ndarray:
    """Distinct uint8 images: random pixels with the image index written into the first two bytes."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    flat = x.reshape(n, -1)
    flat[:, 0], flat[:, 1] = np.arange(n) // 256, np.arange(n) % 256
    return x


def _write_mnist_like(root: Path, folder: str, prefixes, train_labels, test_labels, seed=0):
    """Write train/test idx pairs; returns the uint8 train and test images."""
    out = []
    for i, (prefix, labels) in enumerate(zip(prefixes, (train_labels, test_labels))):
        images = _images(len(labels), seed=seed + i)
        D.write_idx_images(root / folder / f"{prefix}-images-idx3-ubyte", images)
        D.write_idx_labels(root / folder / f"{prefix}-labels-idx1-ubyte", np.asarray(labels, dtype=np.uint8))
        out.append(images)
    return out


def _write_emnist(root, train_labels, test_labels):
    return _write_mnist_like(root, "EMNIST/raw", ("emnist-letters-train", "emnist-letters-test"), train_labels, test_labels)


def _write_cifar(root: Path, n_train=(20,), n_test=10):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = []
    for i, n in enumerate([*n_train, n_test]):
        # torchvision reads pickle.load(f, encoding="latin1")["data"] / ["labels"]: str keys, as the py2 originals decode
        batch = {"batch_label": f"batch {i}", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.permutation(n) % 10]}  # every class in each batch
        name = "test_batch" if i == len(n_train) else f"data_batch_{i + 1}"
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
        batches.append(batch)
    meta = {"num_cases_per_batch": 10000, "label_names": [f"class{c}" for c in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    return batches


def _write_svhn(root: Path, n_train=12, n_test=10):
    folder = root / "SVHN"
    folder.mkdir(parents=True)
    out = []
    for i, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        X = np.random.default_rng(i).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's H, W, C, N layout
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, where 10 means the digit 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": X, "y": y})
        out.append((X, y))
    return out


# ---------------------------------------------------------------- MNIST-style idx loaders


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw")])
def test_mnist_like_loader_scales_flattens_and_round_trips(tmp_path, name, folder):
    y_tr, y_te = np.arange(13) % 10, np.arange(12)[::-1] % 10  # test has every class: nothing moved
    x_tr, x_te = _write_mnist_like(tmp_path, folder, ("train", "t10k"), y_tr, y_te)
    data = D.load_image_data(name, tmp_path)
    assert (data.name, data.n_classes, data.input_size) == (name, 10, 784)
    assert data.x_train.shape == (13, 784) and data.x_test.shape == (12, 784)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64  # pixels as in the files
    assert torch.equal(data.x_train, torch.from_numpy(x_tr.reshape(13, -1)))
    assert torch.equal(data.x_test, torch.from_numpy(x_te.reshape(12, -1)))
    inputs = D.to_inputs(data.x_train)  # ToTensor's scaling: float32 pixel / 255, in [0, 1]
    assert inputs.dtype == torch.float32 and 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0
    assert torch.equal(inputs, torch.from_numpy(x_tr.reshape(13, -1)).float() / 255)
    assert data.y_train.tolist() == y_tr.tolist() and data.y_test.tolist() == y_te.tolist()
    assert folder in data.source and "subset" in data.source  # 13/12 images is not the official 60000/10000


def test_loads_are_cached_per_name_and_root(tmp_path):
    _write_mnist_like(tmp_path, "MNIST/raw", ("train", "t10k"), np.arange(10), np.arange(10))
    first = D.load_image_data("mnist", tmp_path)
    assert D.load_image_data("mnist", str(tmp_path)) is first
    other = tmp_path / "other"
    _write_mnist_like(other, "MNIST/raw", ("train", "t10k"), np.arange(5), np.arange(5))
    assert len(D.load_image_data("mnist", other).y_train) == 5


def test_write_idx_headers_are_big_endian(tmp_path):
    path = D.write_idx_images(tmp_path / "x", np.zeros((3, 2, 5), np.uint8))
    assert path.read_bytes()[:16] == bytes.fromhex("00000803" "00000003" "00000002" "00000005")
    path = D.write_idx_labels(tmp_path / "y", np.array([1, 2], np.uint8))
    assert path.read_bytes() == bytes.fromhex("00000801" "00000002" "0102")
    with pytest.raises(ValueError, match="uint8"):
        D.write_idx_labels(tmp_path / "z", np.array([1, 2], np.int64))


# ---------------------------------------------------------------- EMNIST letters


def test_emnist_letters_labels_are_zero_based(tmp_path):
    train = np.repeat(np.arange(1, 27), 3)
    test = np.tile(np.arange(1, 27), 2)  # every class present: the official test split is used as is
    x_tr, x_te = _write_emnist(tmp_path, train, test)
    data = D.load_image_data("emnist_letters", tmp_path)
    assert data.n_classes == 26
    assert data.y_train.tolist() == (train - 1).tolist() and data.y_test.tolist() == (test - 1).tolist()
    assert torch.equal(data.x_test, torch.from_numpy(x_te.reshape(len(test), -1)))
    assert "moved" not in data.source


def test_emnist_letters_builds_an_all_class_test_set(tmp_path):
    train = np.random.default_rng(1).permutation(np.repeat(np.arange(1, 27), 10))  # 10 per class
    test = np.repeat(np.arange(1, 19), 2)  # a..r only, like the offline subset
    x_tr, x_te = _write_emnist(tmp_path, train, test)
    data = D.load_image_data("emnist_letters", tmp_path)

    assert sorted(data.y_test.unique().tolist()) == list(range(26))
    assert len(data.y_train) + len(data.y_test) == len(train) + len(test)
    n_te = len(test)
    assert torch.equal(data.x_test[:n_te], torch.from_numpy(x_te.reshape(n_te, -1)))  # originals kept
    moved = data.y_test[n_te:]
    assert torch.bincount(moved, minlength=26).tolist() == [2] * 26  # stratified 20% of each class
    train_rows = {tuple(r) for r in (x_tr.reshape(len(train), -1)).tolist()}
    as_rows = lambda x: {tuple(r) for r in x.tolist()}
    assert as_rows(data.x_test[n_te:]) <= train_rows  # moved images come from train...
    assert not as_rows(data.x_test[n_te:]) & as_rows(data.x_train)  # ...and left it
    assert "t, u, v, w, x, y, z" in data.source and "seed 0" in data.source

    D.clear_cache()
    again = D.load_image_data("emnist_letters", tmp_path)
    assert torch.equal(again.x_test, data.x_test) and torch.equal(again.y_train, data.y_train)


# ---------------------------------------------------------------- CIFAR-10 and SVHN


def test_cifar10_subset_flattens_in_chw_plane_order(tmp_path):
    (train, test) = _write_cifar(tmp_path)
    data = D.load_image_data("cifar10", tmp_path)
    assert data.input_size == 3072 and data.x_train.shape == (20, 3072) and data.x_test.shape == (10, 3072)
    # the pickle rows are R, G, B planes of 1024 pixels: flattening must reproduce them exactly
    assert torch.equal(data.x_train, torch.from_numpy(train["data"]))
    assert torch.equal(data.x_test, torch.from_numpy(test["data"]))
    red = data.x_train[3].view(3, 32, 32)[0]
    assert torch.equal(red, torch.from_numpy(train["data"][3, :1024].reshape(32, 32)))
    assert data.y_train.tolist() == train["labels"] and data.y_test.tolist() == test["labels"]
    assert "without md5" in data.source and "data_batch_1" in data.source


def test_cifar10_reads_every_present_batch(tmp_path):
    train1, train2, _ = _write_cifar(tmp_path, n_train=(10, 12), n_test=10)
    data = D.load_image_data("cifar10", tmp_path)
    assert data.y_train.tolist() == train1["labels"] + train2["labels"]
    assert "data_batch_2" in data.source


def test_cifar10_bytes_keyed_pickle_is_a_clear_error(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in batch.items()}))  # b"data": torchvision wants "data"
    with pytest.raises(D.DataFileError, match="data_batch_1"):
        D.load_image_data("cifar10", tmp_path)


def test_svhn_maps_label_10_to_0_and_keeps_chw(tmp_path):
    (X_tr, y_tr), (X_te, y_te) = _write_svhn(tmp_path)
    data = D.load_image_data("svhn", tmp_path)
    assert data.x_train.shape == (12, 3072) and data.x_test.shape == (10, 3072) and data.n_classes == 10
    assert data.y_train.tolist() == [v % 10 for v in y_tr.ravel().tolist()]
    assert 0 in data.y_train.tolist() and 10 not in data.y_train.tolist()
    expected = torch.from_numpy(X_tr.transpose(3, 2, 0, 1).reshape(12, -1).copy())  # (N, C, H, W)
    assert torch.equal(data.x_train, expected)
    assert data.x_test.view(10, 3, 32, 32)[4, 1, 5, 6].item() == X_te[5, 6, 1, 4]
    assert D.to_inputs(data.x_test).view(10, 3, 32, 32)[4, 1, 5, 6].item() == np.float32(X_te[5, 6, 1, 4]) / np.float32(255)
    assert "md5 not checked" in data.source


# ---------------------------------------------------------------- data root resolution


def test_resolve_data_root_order(tmp_path, monkeypatch):
    repo, arg, env = tmp_path / "repo", tmp_path / "arg", tmp_path / "env"
    for p in (repo, arg, env):
        p.mkdir()
    monkeypatch.setattr(D, "_REPO_ROOT", repo)
    assert D.resolve_data_root() == repo / "data"  # nothing else: the download target, not created
    assert not (repo / "data").exists()
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    assert D.resolve_data_root() == shared.resolve()
    monkeypatch.setenv("L2L_DATA_DIR", str(env))
    assert D.resolve_data_root() == env.resolve()
    assert D.resolve_data_root(arg) == arg.resolve()
    assert D.resolve_data_root(str(arg)) == arg.resolve()


def test_resolve_data_root_rejects_missing_folders(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"data_root=.*nope.*existing directory"):
        D.resolve_data_root(missing)
    monkeypatch.setenv("L2L_DATA_DIR", str(missing))
    with pytest.raises(ValueError, match="L2L_DATA_DIR"):
        D.resolve_data_root()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name, hint", [("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                                        ("cifar10", "4,000/1,000 subset"), ("svhn", "not shipped")])
def test_missing_data_set_says_what_and_how(tmp_path, name, hint):
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.load_image_data(name, tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for part in (repr(name), str(tmp_path), "L2L_DATA_DIR", "data_root=", "download=True", hint):
        assert part in message


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match=r"name='imagenet'.*'mnist'.*'svhn'"):
        D.load_image_data("imagenet")


def test_truncated_idx_file_names_the_file(tmp_path):
    _write_mnist_like(tmp_path, "MNIST/raw", ("train", "t10k"), np.arange(10), np.arange(10))
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(D.DataFileError, match=r"train-images-idx3-ubyte is truncated"):
        D.load_image_data("mnist", tmp_path)
    path.write_bytes(b"\x1f\x8b\x08\x00junk")  # a gzip file that was not unpacked
    with pytest.raises(D.DataFileError, match="gzipped"):
        D.load_image_data("mnist", tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    _write_mnist_like(tmp_path, "MNIST/raw", ("train", "t10k"), np.arange(10), np.arange(10))
    D.write_idx_labels(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte", np.arange(9, dtype=np.uint8))
    with pytest.raises(D.DataFileError, match="10 images but .* 9 labels"):
        D.load_image_data("mnist", tmp_path)


def test_corrupt_svhn_mat_names_the_data_set(tmp_path):
    _write_svhn(tmp_path)
    (tmp_path / "SVHN/test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(D.DataFileError, match="test_32x32.mat"):
        D.load_image_data("svhn", tmp_path)


# ---------------------------------------------------------------- meta splits


def _toy(n=60):
    x = torch.arange(n, dtype=torch.uint8).unsqueeze(1).repeat(1, 4)  # pixel value = row number
    return D.ImageData("mnist", x, torch.arange(n) % 10, x[:5] + 100, torch.arange(5), 10, 4, "toy")


def test_meta_splits_are_disjoint_and_cover_train():
    data = _toy()
    splits = D.meta_splits(data)
    assert splits["meta_train"].x.dtype == torch.float32  # a split holds the network's inputs
    train_ids, val_ids = ((splits[s].x[:, 0] * 255).round().long() for s in ("meta_train", "meta_val"))
    assert len(val_ids) == 10 and len(train_ids) == 50
    assert not set(train_ids.tolist()) & set(val_ids.tolist())
    assert sorted(train_ids.tolist() + val_ids.tolist()) == list(range(60))
    assert torch.equal(splits["meta_val"].y, data.y_train[val_ids])  # labels stay with their images
    assert torch.equal(splits["test"].x, D.to_inputs(data.x_test)) and torch.equal(splits["test"].y, data.y_test)


def test_meta_splits_depend_only_on_the_seed():
    data = _toy()
    a, b, c = D.meta_splits(data, seed=3), D.meta_splits(data, seed=3), D.meta_splits(data, seed=4)
    assert torch.equal(a["meta_val"].x, b["meta_val"].x)
    assert not torch.equal(a["meta_val"].x, c["meta_val"].x)
    assert len(D.meta_splits(data, val_fraction=0.5)["meta_val"].y) == 30


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.2, 1.5, True, "0.1", float("nan")])
def test_meta_splits_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match="val_fraction"):
        D.meta_splits(_toy(), val_fraction=bad)


# ---------------------------------------------------------------- the real offline copies (cheap checks)


@pytest.mark.skipif(not (SHARED / "MNIST").is_dir(), reason="offline MNIST not present")
def test_real_mnist():
    data = D.load_image_data("mnist", SHARED)
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.x_train.dtype == torch.uint8 and data.y_test.dtype == torch.int64
    assert int(data.x_train.min()) == 0 and int(data.x_train.max()) == 255
    assert data.y_train.unique().tolist() == list(range(10))
    assert "subset" not in data.source


@pytest.mark.skipif(not (SHARED / "cifar-10-batches-py").is_dir() or not (SHARED / "EMNIST").is_dir(),
                    reason="offline CIFAR-10 / EMNIST subsets not present")
def test_real_subsets_shapes():
    cifar = D.load_image_data("cifar10", SHARED)
    assert cifar.x_train.shape == (4000, 3072) and cifar.x_test.shape == (1000, 3072)
    assert cifar.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # official order, per the shared README
    emnist = D.load_image_data("emnist_letters", SHARED)
    assert len(emnist.y_train) + len(emnist.y_test) == 3536 + 14800
    assert emnist.y_test.unique().tolist() == list(range(26))


def test_meta_split_indices_match_meta_splits():
    data = _toy()
    indices, splits = D.meta_split_indices(data, seed=2), D.meta_splits(data, seed=2)
    for name, (part, idx) in indices.items():
        x = data.x_train if part == "train" else data.x_test
        assert torch.equal(D.to_inputs(x[idx]), splits[name].x)
    assert indices["test"][0] == "test" and indices["meta_val"][0] == indices["meta_train"][0] == "train"


def _same_data(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_test", "y_test")) and (
        (a.name, a.n_classes, a.input_size, a.source) == (b.name, b.n_classes, b.input_size, b.source))


def test_a_decoded_data_set_is_kept_in_one_file_named_by_the_raw_files(tmp_path, monkeypatch, tiny_mnist_root):
    cache = tmp_path / "cache"
    monkeypatch.setenv(D.CACHE_ENV, str(cache))
    first = D.load_image_data("mnist", tiny_mnist_root)
    assert len(list(cache.glob("mnist-*.pt"))) == 1
    D.clear_cache()
    again = D.load_image_data("mnist", tiny_mnist_root)  # read back from the file: the same values, bit for bit
    assert again is not first and _same_data(again, first) and len(list(cache.glob("mnist-*.pt"))) == 1
    monkeypatch.setenv(D.CACHE_ENV, "off")
    D.clear_cache()
    assert _same_data(D.load_image_data("mnist", tiny_mnist_root), first)
    monkeypatch.setenv(D.CACHE_ENV, str(cache))
    images = tiny_mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte"  # another raw file: another kept file
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 0xFF
    images.write_bytes(bytes(raw))
    D.clear_cache()
    changed = D.load_image_data("mnist", tiny_mnist_root)
    assert changed.x_train[-1, -1] != first.x_train[-1, -1] and torch.equal(changed.x_train[:-1], first.x_train[:-1])
    assert len(list(cache.glob("mnist-*.pt"))) == 1  # the copy it replaces is deleted: it would never be read again


def test_a_new_decoded_copy_deletes_the_ones_it_replaces_and_no_other(tmp_path, monkeypatch, tiny_mnist_root):
    """Same data set and root: the older copy (other code) and old-style names go; other roots and sets stay."""
    import shutil

    cache = tmp_path / "cache"
    monkeypatch.setenv(D.CACHE_ENV, str(cache))
    other_root = tmp_path / "other"
    shutil.copytree(tiny_mnist_root, other_root)
    D.load_image_data("mnist", other_root)
    (theirs,) = cache.glob("mnist-*.pt")
    ours = D._decoded_file("mnist", tiny_mnist_root)
    older = ours.with_name(ours.name[:-len("0123456789abcdef.pt")] + "0123456789abcdef.pt")  # as if older code
    old_style, unrelated = cache / "mnist-fedcba9876543210.pt", cache / "fashion_mnist-0123456789abcdef.pt"
    for stale in (older, old_style, unrelated):
        shutil.copyfile(theirs, stale)
    D.clear_cache()
    D.load_image_data("mnist", tiny_mnist_root)
    assert sorted(p.name for p in cache.glob("*.pt")) == sorted([ours.name, theirs.name, unrelated.name])


def test_a_process_that_finds_the_decoded_file_neither_decodes_nor_imports_torchvision(tmp_path, tiny_mnist_root):
    import os
    import subprocess
    import sys

    env = {**os.environ, D.CACHE_ENV: str(tmp_path / "cache")}
    code = (f"import sys; from l2l_core.tasks.data import load_image_data; d = load_image_data('mnist', {str(tiny_mnist_root)!r}); "
            "print('torchvision' in sys.modules, float(d.x_train.sum()))")
    run = lambda: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
    decoded, kept = run(), run()  # the first process decodes (torchvision), the second maps its file
    assert decoded[0] == "True" and kept[0] == "False" and decoded[1] == kept[1]
