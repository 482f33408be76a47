"""The book's chapters, declared once: name, title, part of the table of contents, the settings kind, the experiment
setup (task families and claims), the chapters whose results it reads, the stored measurements it shows, and the
parameters its notebook takes. ``make reproduce``, the scaling estimate, the reuse of results, the verdict tables and
the notebooks read it; ``tests/test_registry.py`` checks ``_toc.yml`` and every notebook's parameters cell against it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from l2l_core.experiments import setups
from l2l_core.experiments.settings import Settings, settings

# the knobs of an experiment chapter's parameters cell (what ``settings`` takes), and where its results go
EXPERIMENT_PARAMS = ("profile", "meta_seeds", "seeds", "init", "n_tasks", "steps", "meta_epochs", "meta_lr",
                     "data_root", "device", "results_dir")
MNIST_RESULTS = ("02_mnist", "03_architectures", "04_relu", "05_mnist_like", "06_cifar_svhn")


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book (one notebook, ``notebooks/<name>.ipynb``)."""

    name: str
    title: str
    part: str                          # its caption in _toc.yml
    kind: str | None = None            # its settings kind (``settings.TRAINING``), None for a chapter without
    setup: Callable | None = None      # settings -> (families, claims) for the chapters whose claims the book states
    reads: tuple[str, ...] = ()        # chapters whose results it reads (its make-reproduce stamp includes theirs)
    book_data: tuple[str, ...] = ()    # stored measurements it shows (book/data/<folder>)
    shipped_weights: bool = False      # it loads l2l_core/optimizers/pretrained
    always_run: bool = False           # it reports this very run (make reproduce never skips it)
    params: tuple[str, ...] = EXPERIMENT_PARAMS  # its parameters cell's names, in order
    results: str = "own"               # what make reproduce points it at: "own" (results_dir), "all" (results_root),
                                       # "build" (build_dir)

    def settings(self, profile: str, **knobs) -> Settings:
        """This chapter's settings for ``profile`` with ``knobs`` (its parameters cell's values) applied."""
        if self.kind is None:
            raise ValueError(f"chapter {self.name!r} has no settings (it reads other chapters' results)")
        return settings(self.name, self.kind, profile, **knobs)


_LIST = [
    Chapter("01_quadratic", "Quadratic functions", "Experiments", "quadratic", setups.quadratic_setup,
            params=tuple(p for p in EXPERIMENT_PARAMS if p not in ("init", "data_root"))),
    Chapter("02_mnist", "MNIST", "Experiments", "mlp", setups.mnist_setup, book_data=("long_run", "stuck_rate"),
            params=EXPERIMENT_PARAMS + ("unroll", "hidden", "activation")),
    Chapter("03_architectures", "Other architectures", "Experiments", "mlp", setups.architectures_setup,
            reads=("02_mnist",)),
    Chapter("04_relu", "ReLU activations", "Experiments", "mlp", setups.relu_setup, reads=("02_mnist",)),
    Chapter("05_mnist_like", "MNIST-like data sets", "Experiments", "mlp", setups.mnist_like_setup,
            reads=("02_mnist",)),
    Chapter("06_cifar_svhn", "CIFAR-10 and SVHN", "Experiments", "mlp", setups.cifar_svhn_setup,
            reads=("02_mnist",)),
    Chapter("07_drop_in", "The drop-in optimizer", "Beyond the thesis", reads=MNIST_RESULTS, shipped_weights=True,
            params=("profile", "results_root", "pretrained", "meta_seed", "checkpoint", "seeds", "steps",
                    "data_root"), results="all"),
    Chapter("08_errata", "Errata of the thesis code", "Beyond the thesis", "mlp", reads=MNIST_RESULTS),
    # its LSTMs are 02's; its baselines' rates come from whichever of 02-06 tuned the family (reuse.tuned_baselines)
    Chapter("09_long_horizons", "Long horizons", "Beyond the thesis", "mlp_long", reads=MNIST_RESULTS),
    Chapter("90_conclusions", "Conclusions", "Results", reads=("01_quadratic",) + MNIST_RESULTS,
            params=("profile", "results_root"), results="all"),
    Chapter("99_reproduction", "Reproduction", "Results", book_data=("rounding_check", "verdict_stability"),
            always_run=True, params=("build_dir", "profile"), results="build"),
]
CHAPTERS: dict[str, Chapter] = {c.name: c for c in _LIST}
# chapter name -> its setup: the experiment chapters whose claims the book states, in the book's order
SETUPS: dict[str, Callable] = {c.name: c.setup for c in _LIST if c.setup is not None}
