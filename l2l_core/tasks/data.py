"""Image classification data for the MLP optimizee tasks, read offline with torchvision's own dataset classes.

torchvision is imported only to decode files that no earlier process decoded: the decoded data set is kept in a
file named by the raw files' content and this module's code, memory-mapped by every process of a run (a notebook's
kernel and its Dask workers), which then neither decodes again nor pays torchvision's ~90 MB.

Every data set becomes flat uint8 pixel tensors (CHW order for colour) plus int64 labels starting at 0; a task
scales the rows it gathers to float32 in [0, 1] (:func:`to_inputs`, ``ToTensor``'s scaling, the same values bit for
bit as scaling the whole set first). Pixels take a quarter of the memory of float copies, and every process of a
run maps them (MNIST: 55 MB instead of 220). Files are looked up under one data root (see :func:`resolve_data_root`); the layout is the one
torchvision expects, described in ``shared/data/README.md``.

Over 300 lines on purpose: the five sets' file checks, readers, decoded-image cache and meta splits share one
table of names, counts, required files and hints; split up, the parts would import each other's private tables.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from l2l_core.checks import check_choice, check_seed

DATASETS = ("mnist", "fashion_mnist", "emnist_letters", "cifar10", "svhn")

_REPO_ROOT = Path(__file__).resolve().parents[2]
_ENV_VAR = "L2L_DATA_DIR"

_TITLES = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "emnist_letters": "EMNIST Letters",
    "cifar10": "CIFAR-10",
    "svhn": "SVHN (cropped digits)",
}
_N_CLASSES = {"mnist": 10, "fashion_mnist": 10, "emnist_letters": 26, "cifar10": 10, "svhn": 10}
_OFFICIAL_COUNTS = {
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "emnist_letters": (124800, 20800),
    "cifar10": (50000, 10000),
    "svhn": (73257, 26032),
}


def _idx_files(folder: str, prefixes: tuple[str, str]) -> tuple[str, ...]:
    return tuple(f"{folder}/{p}-{kind}-ubyte" for p in prefixes for kind in ("images-idx3", "labels-idx1"))


# Files (relative to the data root) that must exist before a data set can be read.
_REQUIRED = {
    "mnist": _idx_files("MNIST/raw", ("train", "t10k")),
    "fashion_mnist": _idx_files("FashionMNIST/raw", ("train", "t10k")),
    "emnist_letters": _idx_files("EMNIST/raw", ("emnist-letters-train", "emnist-letters-test")),
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in ("data_batch_1", "test_batch", "batches.meta")),
    "svhn": ("SVHN/train_32x32.mat", "SVHN/test_32x32.mat"),
}
_HINTS = {
    "emnist_letters": "download=True fetches the whole EMNIST gzip.zip (about 560 MB).",
    "cifar10": (
        "The offline copy (shared/data) is an exact 4,000/1,000 subset (data_batch_1, test_batch, batches.meta), "
        "which this loader reads without md5 checks; download=True fetches the full 50,000/10,000 release (~170 MB)."
    ),
    "svhn": (
        "SVHN is not shipped with the offline data (see shared/data/README.md): put train_32x32.mat and "
        "test_32x32.mat in <data root>/SVHN/, or use download=True (~250 MB); otherwise skip SVHN experiments."
    ),
}


def dataset_shape(name: str) -> tuple[int, int]:
    """(input size, number of classes) of a data set, known without reading its files."""
    check_choice("name", name, DATASETS)
    return (3072 if name in ("cifar10", "svhn") else 784), _N_CLASSES[name]


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are missing under the data root; the message says which files and how to get them."""


class DataFileError(ValueError):
    """A data file exists but is truncated or corrupt; the message names the file(s)."""


@dataclass(frozen=True)
class ImageData:
    """A whole data set as flat tensors, shared by every task built on it (treat the tensors as read-only):
    ``x_train``/``x_test`` are uint8 pixels (N, D), :func:`to_inputs` makes a network's inputs of any rows."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_size: int
    source: str


@dataclass(frozen=True)
class Split:
    """Inputs ``x`` (N, D) float32 and labels ``y`` (N,) int64 of one meta split."""

    x: torch.Tensor
    y: torch.Tensor


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """Pick the data folder: ``data_root`` if given, else ``$L2L_DATA_DIR``, else ``<repo>/../shared/data``, else ``<repo>/data``.

    An explicitly named folder must exist; the last fallback may not (it is created only by ``download=True``).
    """
    for label, value in (("data_root", data_root), (_ENV_VAR, os.environ.get(_ENV_VAR) or None)):
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_dir():
            raise ValueError(
                f"{label}={str(value)!r} is not an existing directory; pass a folder that holds the data sets "
                f"(layout as in shared/data/README.md), or leave {label} unset to fall back to the default"
            )
        return path.resolve()
    shared = _REPO_ROOT.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else _REPO_ROOT / "data"


def write_idx_images(path: str | os.PathLike, images) -> Path:
    """Write uint8 images (N, H, W) as an uncompressed IDX file (magic 2051), the format MNIST-style loaders read."""
    return _write_idx(path, images, ndim=3)


def write_idx_labels(path: str | os.PathLike, labels) -> Path:
    """Write uint8 labels (N,) as an uncompressed IDX file (magic 2049)."""
    return _write_idx(path, labels, ndim=1)


def _write_idx(path, array, ndim: int) -> Path:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise ValueError(f"IDX writer needs a uint8 array with {ndim} dimension(s), got {array.dtype} {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(f">I{ndim}I", 0x800 + ndim, *array.shape) + np.ascontiguousarray(array).tobytes())
    return path


def _check_idx(path: Path, ndim: int) -> int:
    """Check an IDX file's header against its size and return its item count (torchvision only asserts, unnamed)."""
    header_len = 4 + 4 * ndim
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(header_len)
    if len(header) >= 4 and (header[:3] != b"\x00\x00\x08" or header[3] != ndim):
        raise DataFileError(
            f"{path} is not an uncompressed uint8 IDX file with {ndim} dimension(s) "
            f"(first bytes {header[:4].hex()}, expected 000008{ndim:02x}; is it still gzipped?)"
        )
    if len(header) < header_len:
        raise DataFileError(f"{path} is truncated: {size} bytes, shorter than its {header_len}-byte IDX header")
    dims = struct.unpack(f">{ndim}I", header[4:])
    expected = math.prod(dims)
    if size - header_len != expected:
        raise DataFileError(
            f"{path} is truncated or corrupt: its header announces {'x'.join(map(str, dims))} = {expected} bytes "
            f"of data but the file holds {size - header_len}"
        )
    return dims[0]


def _cifar10_batches(folder: Path) -> list[str]:
    """The CIFAR-10 training batches present in ``folder`` (the offline subset has data_batch_1 only)."""
    return [f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]


def _torchvision():
    """torchvision, imported when files are decoded (see the module docstring for why not at import)."""
    import torchvision
    import torchvision.datasets.utils

    return torchvision


@functools.cache
def _unverified_classes():
    """(CIFAR10, SVHN) subclasses without md5 checks, for copies that differ from the official files: CIFAR10 reads
    whichever of data_batch_1..5 are present; SVHN only checks the .mat file exists."""
    datasets = _torchvision().datasets

    class CIFAR10Unverified(datasets.CIFAR10):
        test_list = [["test_batch", None]]
        meta = {"filename": "batches.meta", "key": "label_names", "md5": None}

        def __init__(self, root, train: bool = True):
            self.train_list = [[f, None] for f in _cifar10_batches(Path(root) / self.base_folder)]
            super().__init__(root, train=train, download=False)

    class SVHNUnverified(datasets.SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

    return CIFAR10Unverified, SVHNUnverified


def _read_idx_set(cls, root: Path, name: str, **kwargs):
    """Read an MNIST-style data set (idx files) with torchvision class ``cls``; validate the files first."""
    paths = [root / f for f in _REQUIRED[name]]
    for images, labels in (paths[0:2], paths[2:4]):
        n_images, n_labels = _check_idx(images, 3), _check_idx(labels, 1)
        if n_images != n_labels:
            raise DataFileError(f"{images} holds {n_images} images but {labels} holds {n_labels} labels")
    train, test = cls(root, train=True, **kwargs), cls(root, train=False, **kwargs)
    reader = f"torchvision.datasets.{cls.__name__} on {paths[0].parent} ({', '.join(p.name for p in paths)})"
    return train.data, train.targets, test.data, test.targets, list(train.classes), reader


def _read_cifar10(root: Path):
    """Read CIFAR-10 pickles; the stock class when every official md5 matches, else the no-md5 subclass."""
    torchvision = _torchvision()
    folder = root / torchvision.datasets.CIFAR10.base_folder
    stock = torchvision.datasets.CIFAR10
    official = all(
        torchvision.datasets.utils.check_integrity(folder / f, md5) for f, md5 in [*stock.train_list, *stock.test_list, [stock.meta["filename"], stock.meta["md5"]]]
    )
    cls = stock if official else _unverified_classes()[0]
    train, test = cls(root, train=True), cls(root, train=False)
    files = [f for f, _ in train.train_list + train.test_list]
    how = (
        "torchvision.datasets.CIFAR10 (md5-verified official files)"
        if official
        else "a torchvision CIFAR10 subclass without md5 checks (files are not the official release, "
        "e.g. the offline exact subset)"
    )

    def chw(data: np.ndarray) -> torch.Tensor:  # torchvision hands out HWC; the original planes are CHW
        return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))

    return (
        chw(train.data), torch.tensor(train.targets), chw(test.data), torch.tensor(test.targets),
        list(train.classes), f"{how} on {folder} ({', '.join(files)})",
    )


def _read_svhn(root: Path):
    """Read SVHN .mat files from ``<root>/SVHN`` (labels already 0..9); md5-checked when they are the official files."""
    torchvision = _torchvision()
    folder = root / "SVHN"
    stock = torchvision.datasets.SVHN
    parts, verified = [], []
    for split in ("train", "test"):
        _, filename, md5 = stock.split_list[split]
        ok = torchvision.datasets.utils.check_integrity(folder / filename, md5)
        verified.append(ok)
        parts.append((stock if ok else _unverified_classes()[1])(folder, split=split))
    how = "md5-verified official files" if all(verified) else "md5 not checked: files differ from the official ones"
    train, test = parts
    return (
        torch.from_numpy(train.data), torch.from_numpy(train.labels), torch.from_numpy(test.data),
        torch.from_numpy(test.labels), [str(d) for d in range(10)],
        f"torchvision.datasets.SVHN ({how}) on {folder} (train_32x32.mat, test_32x32.mat)",
    )


def _read(name: str, root: Path):
    torchvision = _torchvision()
    if name == "mnist":
        return _read_idx_set(torchvision.datasets.MNIST, root, name)
    if name == "fashion_mnist":
        return _read_idx_set(torchvision.datasets.FashionMNIST, root, name)
    if name == "emnist_letters":
        x_tr, y_tr, x_te, y_te, classes, reader = _read_idx_set(torchvision.datasets.EMNIST, root, name, split="letters")
        return x_tr, y_tr - 1, x_te, y_te - 1, classes[1:], reader + "; labels 1..26 shifted to 0..25"
    if name == "cifar10":
        return _read_cifar10(root)
    return _read_svhn(root)


def _download(name: str, root: Path) -> None:
    """Let torchvision fetch the data set's official files into ``root`` (needs internet)."""
    torchvision = _torchvision()
    root.mkdir(parents=True, exist_ok=True)
    if name == "svhn":
        for split in ("train", "test"):
            torchvision.datasets.SVHN(root / "SVHN", split=split, download=True)
    elif name == "emnist_letters":
        torchvision.datasets.EMNIST(root, split="letters", download=True)
    else:
        cls = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}[name]
        getattr(torchvision.datasets, cls)(root, train=True, download=True)


def _missing(name: str, root: Path) -> list[str]:
    return [f for f in _REQUIRED[name] if not (root / f).is_file()]


def _not_found(name: str, root: Path, missing: list[str], extra: str = "") -> DatasetNotFoundError:
    where = str(root) if root.is_dir() else f"{root} (which does not exist)"
    message = (
        f"data set {name!r} ({_TITLES[name]}) not found in data root {where}: looked for "
        f"{', '.join(_REQUIRED[name])}; missing {', '.join(missing)}. To get it, set {_ENV_VAR} or pass "
        f"data_root=... pointing at a folder with these files, or call load_image_data({name!r}, download=True) "
        f"with internet access. {_HINTS.get(name, '')}"
    ).rstrip()
    return DatasetNotFoundError(message + extra)


def _cover_test_classes(x_tr, y_tr, x_te, y_te, classes, fraction: float = 0.2, seed: int = 0):
    """If test lacks classes that train has, move a stratified seeded ``fraction`` of train into test."""
    train_classes = sorted(set(y_tr.tolist()))
    absent = sorted(set(train_classes) - set(y_te.tolist()))
    if not absent:
        return x_tr, y_tr, x_te, y_te, ""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in train_classes:
        idx = (y_tr == c).nonzero().squeeze(1)
        k = min(max(math.floor(fraction * len(idx) + 0.5), 1), len(idx) - 1)
        held.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    held = torch.cat(held).sort().values
    keep = torch.ones(len(y_tr), dtype=torch.bool)
    keep[held] = False
    note = (
        f"; the test split lacks classes {', '.join(classes[c] for c in absent)}, so a stratified "
        f"{fraction:.0%} of train (seed {seed}, {len(held)} images) was moved to test after the "
        f"{len(y_te)} original test images"
    )
    return x_tr[keep], y_tr[keep], torch.cat([x_te, x_tr[held]]), torch.cat([y_te, y_tr[held]]), note


def _flat_pixels(x: torch.Tensor, name: str, split: str) -> torch.Tensor:
    if x.dtype != torch.uint8:
        raise DataFileError(f"{name} {split} images decoded as {x.dtype}, expected uint8 pixels")
    return x.reshape(len(x), -1).contiguous()


def input_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the network inputs that rows of ``x`` become (see :func:`to_inputs`)."""
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


def to_inputs(x: torch.Tensor) -> torch.Tensor:
    """A network's inputs from rows of a data set: uint8 pixels become float32 in [0, 1] (``ToTensor``'s scaling);
    float rows are taken as inputs already (as they are: tests pass float64 rows)."""
    return x.to(input_dtype(x)).div_(255) if x.dtype == torch.uint8 else x


_CACHE: dict[tuple[str, Path], ImageData] = {}
CACHE_ENV = "L2L_CACHE_DIR"


def _cache_dir() -> Path | None:
    """Where decoded image arrays are kept for sharing: ``$L2L_CACHE_DIR``, else ~/.cache/l2l; "off": nowhere."""
    value = os.environ.get(CACHE_ENV)
    if value == "off":
        return None
    return Path(value) if value else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "l2l"


def _input_files(name: str, root: Path) -> list[Path]:
    """The files the reader of data set ``name`` reads (CIFAR-10: every training batch present)."""
    files = [root / f for f in _REQUIRED[name]]
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        files += [folder / f for f in _cifar10_batches(folder) if folder / f not in files]
    return files


def _decoded_file(name: str, root: Path) -> Path | None:
    """Where the decoded data set is kept: named by the raw files' content, this module's code and torchvision's
    version, so that any change to what decoding would give makes a new file. None when the cache is off."""
    from importlib.metadata import PackageNotFoundError, version

    folder = _cache_dir()
    if folder is None:
        return None
    try:
        reader = version("torchvision")
    except PackageNotFoundError:
        reader = "torchvision not installed"
    digest = hashlib.sha256(Path(__file__).read_bytes() + reader.encode())
    try:
        for path in _input_files(name, root):
            digest.update(f"\0{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    digest.update(chunk)
    except OSError:  # unreadable: decoding reports it, naming the file
        return None
    return folder / f"{name}-{_root_tag(root)}-{digest.hexdigest()[:16]}.pt"


def _root_tag(root: Path) -> str:
    """A short name for the data root, so that the decoded copies of one data set from one root can be found."""
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]


def _prune_other_copies(path: Path) -> None:
    """Delete the decoded copies that ``path`` replaces: same data set and root, other code or raw files (each change
    of this module names a new file, and the old ones are never read again), and the copies named before files
    carried their root (``<name>-<16 hex>.pt``). A copy still mapped by a running process stays readable there."""
    name, tag, _ = path.stem.rsplit("-", 2)
    old_style = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}\.pt")
    for other in path.parent.glob(f"{name}-*.pt"):
        if other != path and (other.name.startswith(f"{name}-{tag}-") or old_style.fullmatch(other.name)):
            try:
                other.unlink()
            except OSError:  # in use where files cannot be deleted while open, or already gone: try next time
                pass


def _load_decoded(path: Path | None) -> ImageData | None:
    """The data set kept in ``path``, memory-mapped (None if there is none, or it cannot be read)."""
    if path is None or not path.is_file():
        return None
    try:
        return ImageData(**torch.load(path, mmap=True, weights_only=True))
    except (OSError, RuntimeError, TypeError, ValueError):  # truncated or foreign file: decode again
        return None


def _keep_decoded(path: Path | None, data: ImageData) -> ImageData:
    """Write ``data`` to ``path`` (atomically) and return it memory-mapped from there, so the processes of a run share
    one copy in memory; the values are the ones passed in, bit for bit. If the file cannot be written (read-only
    home, full disk) or the cache is off, ``data`` is returned as it is."""
    if path is None:
        return data
    try:
        from l2l_core.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save(asdict(data), tmp)
    except (OSError, RuntimeError):
        return data
    _prune_other_copies(path)
    return _load_decoded(path) or data


def clear_cache() -> None:
    """Forget the data sets :func:`load_image_data` keeps in memory."""
    _CACHE.clear()


def _decode(name: str, root: Path) -> ImageData:
    """Read data set ``name``'s files with torchvision, check them and make flat pixel tensors (see load_image_data)."""
    try:
        x_tr, y_tr, x_te, y_te, classes, reader = _read(name, root)
    except DataFileError:
        raise  # our own checks already name the file
    except Exception as error:  # torchvision/pickle/scipy failures on corrupt files carry no file name
        files = ", ".join(str(root / f) for f in _REQUIRED[name])
        raise DataFileError(f"could not read data set {name!r} from {files}: {type(error).__name__}: {error}") from error

    n_classes = _N_CLASSES[name]
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) != len(y) or len(x) == 0:
            raise DataFileError(f"{name} {split} split has {len(x)} images and {len(y)} labels ({reader})")
        if y.min() < 0 or y.max() >= n_classes:
            raise DataFileError(f"{name} {split} labels span {int(y.min())}..{int(y.max())}, outside 0..{n_classes - 1} ({reader})")
    n_train_file, n_test_file = len(y_tr), len(y_te)
    x_tr, y_tr, x_te, y_te, note = _cover_test_classes(x_tr, y_tr, x_te, y_te, classes)

    official = _OFFICIAL_COUNTS[name]
    counts = f"{n_train_file} train / {n_test_file} test images in the files"
    if (n_train_file, n_test_file) != official:
        counts += f" (a subset: the official release has {official[0]} / {official[1]})"
    if note:
        counts += f"{note}, giving {len(y_tr)} train / {len(y_te)} test"
    x_train, x_test = _flat_pixels(x_tr, name, "train"), _flat_pixels(x_te, name, "test")
    return ImageData(
        name=name,
        x_train=x_train,
        y_train=y_tr.to(torch.int64),
        x_test=x_test,
        y_test=y_te.to(torch.int64),
        n_classes=n_classes,
        input_size=x_train.shape[1],
        source=f"{_TITLES[name]} via {reader}; {counts}",
    )


def load_image_data(name: str, data_root: str | os.PathLike | None = None, download: bool = False) -> ImageData:
    """Load data set ``name`` (one of :data:`DATASETS`) as flat uint8 pixel tensors, cached per (name, data root).

    Reading goes through torchvision's MNIST, FashionMNIST, EMNIST(split="letters"), CIFAR10 and SVHN classes.
    EMNIST letters keep EMNIST's stored (transposed) orientation, harmless for an MLP. When the test split lacks
    classes present in train (the offline EMNIST subset has no t-z in test), a stratified, seed-0 20% of train is
    moved to test so evaluation covers every class; ``source`` records this and which files were read.
    ``download=True`` lets torchvision fetch missing files into the data root (needs internet).
    """
    check_choice("name", name, DATASETS)
    if not isinstance(download, bool):
        raise TypeError(f"download={download!r} must be True or False")
    root = resolve_data_root(data_root)
    key = (name, root)
    if key in _CACHE:
        return _CACHE[key]

    missing = _missing(name, root)
    if missing and download:
        try:
            _download(name, root)
        except Exception as error:  # no internet, server gone, disk full: report with the same guidance
            raise _not_found(name, root, missing, f" (download=True failed: {type(error).__name__}: {error})") from error
        missing = _missing(name, root)
    if missing:
        raise _not_found(name, root, missing)

    kept = _decoded_file(name, root)
    data = _load_decoded(kept) or _keep_decoded(kept, _decode(name, root))
    _CACHE[key] = data
    return data


def meta_split_indices(data: ImageData, val_fraction: float = 1 / 6, seed: int = 0) -> dict[str, tuple[str, torch.Tensor]]:
    """Which rows form each meta split: {"meta_train": ("train", idx), "meta_val": ("train", idx), "test": ("test", idx)}.

    meta_train and meta_val are disjoint parts of the training set (a seeded permutation); test is the test set.
    Indices instead of copies let every task family share one copy of the images.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be a number strictly between 0 and 1")
    check_seed("seed", seed)
    n = len(data.y_train)
    n_val = math.floor(val_fraction * n + 0.5)
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction!r} leaves an empty meta split of the {n} training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    return {"meta_train": ("train", train), "meta_val": ("train", val), "test": ("test", torch.arange(len(data.y_test)))}


def meta_splits(data: ImageData, val_fraction: float = 1 / 6, seed: int = 0) -> dict[str, Split]:
    """Split ``data`` into disjoint meta_train / meta_val parts of its training set (seeded) plus its test set.

    The learned optimizer is meta-trained on meta_train tasks, tuned on meta_val, and reported on test.
    """
    out = {}
    for split, (part, idx) in meta_split_indices(data, val_fraction, seed).items():
        x, y = (data.x_train, data.y_train) if part == "train" else (data.x_test, data.y_test)
        out[split] = Split(to_inputs(x[idx]), y[idx])
    return out
