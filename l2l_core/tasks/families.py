"""Optimizees as functional task batches: a flat parameter matrix theta (n_tasks, dim) and a loss.

A *family* samples batches of tasks; a *task batch* gives initial parameters and per-task losses
``loss(theta, step) -> (n_tasks,)``. Tasks never interact, so summing their losses gives each task
its own gradient, and the coordinatewise LSTM (or any elementwise torch.optim optimizer) can treat a
whole batch as one long parameter vector. Task ``i`` of ``sample(n, seed, split)`` depends only on
``(seed, split, i)``, so evaluating tasks in chunks gives the same numbers as all at once.

Over 300 lines on purpose: both families share the task-batch contract and its seeding, kept in one place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from l2l_core.checks import check_choice, check_int, check_seed
from l2l_core.optimizers.lstm import LSTMConfig
from l2l_core.seeding import derive_seed, generator
from l2l_core.tasks.data import input_dtype, to_inputs

SPLITS = ("meta_train", "meta_val", "test")
# How an MLP optimizee's weights start. "thesis": every weight N(0, 0.001^2), every bias 0, as the thesis code's
# optimizee network draws them (the paper's released code: N(0, 0.01^2)); near-zero weights start a sigmoid MLP on
# a flat plateau. "pytorch": torch.nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
MLP_INITS = ("thesis", "pytorch")
THESIS_INIT_STD = 0.001
ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu}
QUADRATIC_DISTRIBUTIONS = ("gaussian", "uniform")


class TaskBatch:
    """Interface of a batch of optimizees (see module docstring)."""

    n_tasks: int
    dim: int
    task_seeds: list[int]

    def initial_params(self) -> torch.Tensor:  # (n_tasks, dim)
        raise NotImplementedError

    def loss(self, theta: torch.Tensor, step: int) -> torch.Tensor:  # (n_tasks,)
        raise NotImplementedError

    def accuracy(self, theta: torch.Tensor) -> torch.Tensor | None:
        """Held-out accuracy per task for classifiers, ``None`` for other tasks."""
        return None

    @property
    def tensor_sizes(self) -> tuple[int, ...]:
        """Sizes of the parameter tensors laid out one after another in a flat parameter vector."""
        return (self.dim,)

    def repeat(self, k: int) -> "TaskBatch":
        """The same tasks stacked ``k`` times (copy j of task i is task ``j * n_tasks + i``)."""
        raise NotImplementedError

    def subset(self, start: int, stop: int) -> "TaskBatch":
        """Tasks ``start..stop-1`` as a batch of their own (for evaluating in chunks)."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- quadratics
@dataclass
class QuadraticTasks(TaskBatch):
    """f(theta) = ||W theta - y||^2 for each task, W (n, d, d), y (n, d)."""

    W: torch.Tensor
    y: torch.Tensor
    task_seeds: list[int]

    @property
    def n_tasks(self) -> int:
        return self.W.shape[0]

    @property
    def dim(self) -> int:
        return self.W.shape[2]

    def initial_params(self) -> torch.Tensor:
        # the thesis code (a popular PyTorch port) starts every quadratic at theta = 0
        return torch.zeros(self.n_tasks, self.dim, device=self.W.device, dtype=self.W.dtype)

    def repeat(self, k: int) -> "QuadraticTasks":
        return QuadraticTasks(self.W.repeat(k, 1, 1), self.y.repeat(k, 1), self.task_seeds * k)

    def subset(self, start: int, stop: int) -> "QuadraticTasks":
        return QuadraticTasks(self.W[start:stop], self.y[start:stop], self.task_seeds[start:stop])

    def loss(self, theta: torch.Tensor, step: int) -> torch.Tensor:
        residual = torch.bmm(self.W, theta.unsqueeze(2)).squeeze(2) - self.y
        return residual.pow(2).sum(1)


@dataclass(frozen=True)
class QuadraticFamily:
    """10-d quadratics; W and y drawn N(0, 1) as in the thesis, or U[0, 1) as in the paper's code."""

    dim: int = 10
    distribution: str = "gaussian"
    device: str = "cpu"
    name = "quadratic"
    default_lstm = LSTMConfig(preprocess=False, output_scale=1.0)
    default_meta_lr = 0.003

    def __post_init__(self):
        check_int("dim", self.dim)
        check_choice("distribution", self.distribution, QUADRATIC_DISTRIBUTIONS)

    def describe(self) -> str:
        return f"quadratic-{self.dim}d-{self.distribution}"

    def sample(self, n_tasks: int, seed: int, split: str = "test") -> QuadraticTasks:
        check_int("n_tasks", n_tasks)
        check_seed("seed", seed)
        check_choice("split", split, SPLITS)
        seeds = [derive_seed("quadratic", seed, split, i) for i in range(n_tasks)]
        W, y = [], []
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            draw = torch.randn if self.distribution == "gaussian" else torch.rand
            W.append(draw(self.dim, self.dim, generator=g))
            y.append(draw(self.dim, generator=g))
        return QuadraticTasks(torch.stack(W).to(self.device), torch.stack(y).to(self.device), seeds)


# ----------------------------------------------------------------------------- MLP classifiers
@dataclass(frozen=True)
class MLPShape:
    """Layer sizes of an MLP; parameters are laid out flat as [W_1 (in x out) row-major, b_1, W_2, b_2, ...]."""

    sizes: tuple[int, ...]

    @property
    def layers(self) -> list[tuple[int, int]]:
        return list(zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def dim(self) -> int:
        return sum(i * o + o for i, o in self.layers)

    @property
    def tensor_sizes(self) -> tuple[int, ...]:
        """(W_1, b_1, W_2, b_2, ...) sizes in layout order."""
        return tuple(size for i, o in self.layers for size in (i * o, o))

    def unflatten(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views (W (n, in, out), b (n, out)) of a flat (n, dim) parameter matrix."""
        # one split, not a slice per tensor: its backward writes the gradient once, where slicing zero-fills
        # a whole (n, dim) gradient per tensor and adds them up
        parts = torch.split(theta, self.tensor_sizes, dim=1)
        return [(parts[2 * k].view(-1, fan_in, fan_out), parts[2 * k + 1])
                for k, (fan_in, fan_out) in enumerate(self.layers)]

    def init(self, task_seed: int, init: str = "thesis") -> torch.Tensor:
        """Initial flat parameters of one task, drawn from ``task_seed`` by the rule ``init`` (see MLP_INITS)."""
        check_choice("init", init, MLP_INITS)
        g = torch.Generator().manual_seed(task_seed)
        parts = []
        for fan_in, fan_out in self.layers:
            if init == "thesis":
                parts += [torch.randn(fan_in * fan_out, generator=g) * THESIS_INIT_STD, torch.zeros(fan_out)]
            else:
                bound = 1.0 / math.sqrt(fan_in)
                parts.append(torch.empty(fan_in * fan_out + fan_out).uniform_(-bound, bound, generator=g))
        return torch.cat(parts)


@dataclass
class MLPTasks(TaskBatch):
    """Minibatch cross-entropy of MLP classifiers; each task has its own init and minibatch stream.

    ``x``/``y`` are a whole data set part (shared, never copied; ``x`` uint8 pixels, scaled to float32 inputs as
    rows are gathered, or float inputs used as they are); minibatches (with replacement) come
    from the rows ``fit_idx`` and accuracy is measured on the disjoint rows ``score_idx``, so the
    reported accuracy is a held-out accuracy for the optimizee too.
    """

    shape: MLPShape
    activation: str
    batch_size: int
    init: str
    x: torch.Tensor
    y: torch.Tensor
    fit_idx: torch.Tensor
    score_idx: torch.Tensor
    task_seeds: list[int]
    # task_seeds is ``copies`` repetitions of one list (``repeat``, e.g. a learning-rate grid): each step's
    # minibatch is then gathered once and shared by the copies, instead of once per copy
    copies: int = 1

    @property
    def n_tasks(self) -> int:
        return len(self.task_seeds)

    @property
    def dim(self) -> int:
        return self.shape.dim

    @property
    def tensor_sizes(self) -> tuple[int, ...]:
        return self.shape.tensor_sizes

    def initial_params(self) -> torch.Tensor:
        return torch.stack([self.shape.init(s, self.init) for s in self.task_seeds]).to(self.x.device, input_dtype(self.x))

    def minibatch_indices(self, step: int) -> torch.Tensor:
        """(n_tasks, batch_size) rows of ``x``; a pure function of (task seed, step)."""
        n = self.fit_idx.shape[0]
        unique = {s: torch.randint(n, (self.batch_size,), generator=generator(s, step)) for s in set(self.task_seeds)}
        return self.fit_idx[torch.stack([unique[s] for s in self.task_seeds]).to(self.x.device)]

    def repeat(self, k: int) -> "MLPTasks":
        return replace(self, task_seeds=self.task_seeds * k, copies=self.copies * k)

    def subset(self, start: int, stop: int) -> "MLPTasks":
        return replace(self, task_seeds=self.task_seeds[start:stop], copies=1)

    def logits(self, theta: torch.Tensor, x: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """x (n, B, in) or (B, in) shared by all tasks -> logits (n, B, classes). With ``copies`` > 1, x is
        (n / copies, B, in), shared by the copies of each task (task i + c * n / copies sees x[i])."""
        act = ACTIVATIONS[self.activation]
        layers = self.shape.unflatten(theta)
        h = x
        for k, (W, b) in enumerate(layers):
            if h.dim() == 2:  # inputs shared by all tasks: one (B, in) @ (in, n*out) product, no broadcast copy
                n, fan_in, fan_out = W.shape
                h = (h @ W.transpose(0, 1).reshape(fan_in, n * fan_out)).view(-1, n, fan_out).transpose(0, 1)
                h = h + b.unsqueeze(1)
            elif k == 0 and copies > 1:  # each base task's inputs times all its copies' weights in one product
                n, fan_in, fan_out = W.shape
                base, batch = n // copies, h.shape[1]
                Wc = W.view(copies, base, fan_in, fan_out).permute(1, 2, 0, 3).reshape(base, fan_in, copies * fan_out)
                h = torch.bmm(h, Wc).view(base, batch, copies, fan_out).permute(2, 0, 1, 3).reshape(n, batch, fan_out)
                h = h + b.unsqueeze(1)
            else:
                h = torch.baddbmm(b.unsqueeze(1), h, W)
            if k < len(layers) - 1:
                h = act(h)
        return h

    def loss(self, theta: torch.Tensor, step: int) -> torch.Tensor:
        copies = self.copies if self.copies > 1 and len(self.task_seeds) % self.copies == 0 else 1
        base = self if copies == 1 else self.subset(0, len(self.task_seeds) // copies)
        rows = base.minibatch_indices(step)
        # index_select copies whole rows (x[rows] indexes element by element: ~1.5x slower here)
        x = to_inputs(self.x.index_select(0, rows.reshape(-1))).view(*rows.shape, self.x.shape[1])
        logits = self.logits(theta, x, copies)
        n, B, C = logits.shape
        labels = self.y[rows].repeat(copies, 1)
        # cross-entropy with the classes along dim 0: PyTorch's log-softmax over a short last dimension (10
        # classes) is ~5x slower than across a transposed view (10k rows: 0.67 ms vs 0.13 ms), same values
        log_p = torch.log_softmax(logits.reshape(n * B, C).t(), 0)
        return -log_p.gather(0, labels.reshape(1, n * B)).view(n, B).mean(1)

    @torch.no_grad()
    def accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        logits = self.logits(theta, to_inputs(self.x[self.score_idx]))
        return (logits.argmax(2) == self.y[self.score_idx]).float().mean(1)


# one copy of each data set per device, shared by every family and task batch
_DEVICE_DATA: dict = {}


@dataclass(frozen=True)
class MLPFamily:
    """MLP classifiers on an image data set (784-20-10 sigmoid on MNIST in the thesis), initialised by ``init``."""

    dataset: str = "mnist"
    hidden: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    batch_size: int = 128
    init: str = "thesis"
    data_root: str | None = None
    device: str = "cpu"
    name = "mlp"
    default_lstm = LSTMConfig(preprocess=True, output_scale=0.1)
    default_meta_lr = 0.01

    def __post_init__(self):
        from l2l_core.tasks.data import DATASETS

        check_choice("dataset", self.dataset, DATASETS)
        if not isinstance(self.hidden, (tuple, list)) or len(self.hidden) == 0:
            raise ValueError(f"hidden={self.hidden!r} must be a non-empty tuple of positive layer sizes")
        for h in self.hidden:
            check_int("hidden (each layer size)", h)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        check_choice("activation", self.activation, ACTIVATIONS)
        check_int("batch_size", self.batch_size)
        check_choice("init", self.init, MLP_INITS)

    def describe(self) -> str:
        return f"{self.dataset}-mlp-{'-'.join(map(str, self.hidden))}-{self.activation}-init-{self.init}"

    @property
    def data(self):
        """The whole data set (loaded once per process); raises DatasetNotFoundError if its files are missing."""
        from l2l_core.tasks.data import load_image_data

        return load_image_data(self.dataset, self.data_root)

    @property
    def shape(self) -> MLPShape:
        data = self.data
        return MLPShape((data.input_size, *self.hidden, data.n_classes))

    def _split(self, split: str) -> tuple[torch.Tensor, ...]:
        """(x, y, fit_idx, score_idx) of a split on the family's device: the split's rows, halved by a fixed permutation."""
        from l2l_core.tasks.data import meta_split_indices, resolve_data_root

        data = self.data
        key = (self.dataset, resolve_data_root(self.data_root), self.device, split)
        if key not in _DEVICE_DATA:
            part, rows = meta_split_indices(data)[split]
            x, y = (data.x_train, data.y_train) if part == "train" else (data.x_test, data.y_test)
            order = rows[torch.randperm(len(rows), generator=generator("fit-score", self.dataset, split))]
            fit, score = order[: len(order) // 2], order[len(order) // 2 :]
            xy_key = (*key[:3], "data:" + part)
            if xy_key not in _DEVICE_DATA:
                _DEVICE_DATA[xy_key] = (x.to(self.device), y.to(self.device))
            _DEVICE_DATA[key] = (*_DEVICE_DATA[xy_key], fit.to(self.device), score.to(self.device))
        return _DEVICE_DATA[key]

    def sample(self, n_tasks: int, seed: int, split: str = "test") -> MLPTasks:
        check_int("n_tasks", n_tasks)
        check_seed("seed", seed)
        check_choice("split", split, SPLITS)
        seeds = [derive_seed("mlp", self.dataset, seed, split, i) for i in range(n_tasks)]
        return MLPTasks(self.shape, self.activation, self.batch_size, self.init, *self._split(split), seeds)


FAMILIES = {"quadratic": QuadraticFamily, "mlp": MLPFamily}


def make_family(name: str, **options):
    """Build a task family by name ('quadratic' or 'mlp') with its options."""
    check_choice("family", name, FAMILIES)
    return FAMILIES[name](**options)
