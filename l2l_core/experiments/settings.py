"""Profiles and settings: every knob of a chapter's experiment, with its profile's default (one table per fact)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from l2l_core.checks import check_choice, check_int, check_positive_float, check_seed
from l2l_core.tasks.data import dataset_shape
from l2l_core.tasks.families import MLPFamily, QuadraticFamily
from l2l_core.training.restarts import RESTART_RULE


REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("smoke", "quick", "full")
REFERENCE_PROFILE = "full"  # the book's evidence: the profile whose LSTMs reference/ stores
REFERENCE_DIR = REPO_ROOT / "reference"  # the reference run: its stored LSTMs, tables and executed notebooks
DEVICES = ("cpu", "cuda")

# Meta-training budget per task kind and profile: LSTMs meta-trained from each of ``meta_seeds``, each for
# meta_epochs x trajectories_per_epoch trajectories of tasks_per_trajectory tasks, validated after every epoch.
# smoke checks the pipeline in seconds (its numbers mean nothing); quick gives a first answer in minutes; full is
# what the book reports: the thesis code's budgets (main_loop: epochs x 100 trajectories of one task, 100
# validation tasks; 10,000 trajectories for the quadratics, 2,000 for MNIST), trained once and stored (reference/).
# ``errata_trajectories`` is the budget of the errata chapter's LSTMs; ``snapshot_budgets`` the budgets at which the
# main LSTMs also keep the one a run of that many trajectories selects, so that arms trained for less compare like
# with like.
# ``meta_seeds`` of the MNIST kind are the main arm's; its side arms (PyTorch init, errata) take the first five
# (``setups.SIDE_ARM_META_SEEDS``). Ten is the compute cap: the seed rule asks for more than five (method page).
# ``restarts``: an LSTM stuck on the untrained value after its first epoch is replaced by a freshly initialised one,
# at most this many times (``meta_train``; attempts are seeded by (seed, attempt), so every run and errata arm draws
# the same ones). A restart costs one epoch, and only where an LSTM is stuck.
TRAINING = {
    "quadratic": {
        "smoke": dict(meta_seeds=(0, 1), meta_epochs=2, trajectories_per_epoch=4, tasks_per_trajectory=4, train_steps=20,
                      unroll=10, n_val_tasks=4, restarts=0),
        "quick": dict(meta_seeds=(0, 1, 2), meta_epochs=15, trajectories_per_epoch=20, tasks_per_trajectory=8,
                      train_steps=100, unroll=20, n_val_tasks=20, restarts=9),
        "full": dict(meta_seeds=(0, 1, 2, 3, 4), meta_epochs=100, trajectories_per_epoch=100, tasks_per_trajectory=1,
                     train_steps=100, unroll=20, n_val_tasks=100, restarts=9),
    },
    "mlp": {
        "smoke": dict(meta_seeds=(0, 1), meta_epochs=2, trajectories_per_epoch=1, tasks_per_trajectory=1, train_steps=20,
                      unroll=10, n_val_tasks=2, errata_trajectories=1, snapshot_budgets=(1,), restarts=0),
        "quick": dict(meta_seeds=(0, 1, 2), meta_epochs=4, trajectories_per_epoch=20, tasks_per_trajectory=1,
                      train_steps=100, unroll=20, n_val_tasks=5, errata_trajectories=40, snapshot_budgets=(40,),
                      restarts=9),
        "full": dict(meta_seeds=tuple(range(10)), meta_epochs=20, trajectories_per_epoch=100, tasks_per_trajectory=1,
                     train_steps=100, unroll=20, n_val_tasks=100, errata_trajectories=1000, snapshot_budgets=(500, 1000),
                     restarts=9),
    },
}
TRAINING["mlp_long"] = TRAINING["mlp"]  # the long-horizon chapter reuses experiment 2's LSTMs
# Evaluation budget: every LSTM (one per meta-training seed) and every tuned baseline runs on the same n_tasks
# held-out test tasks of each evaluation seed in ``seeds``, for ``steps`` steps; baselines tuned on tune_tasks
# meta-validation tasks for tune_steps steps.
EVALUATION = {
    "quadratic": {
        "smoke": dict(seeds=(0,), n_tasks=4, steps=20, tune_tasks=4, tune_steps=20),
        "quick": dict(seeds=(0,), n_tasks=50, steps=200, tune_tasks=20, tune_steps=100),
        "full": dict(seeds=(0,), n_tasks=100, steps=200, tune_tasks=50, tune_steps=100),
    },
    "mlp": {
        "smoke": dict(seeds=(0,), n_tasks=2, steps=20, tune_tasks=2, tune_steps=20),
        "quick": dict(seeds=(0,), n_tasks=10, steps=200, tune_tasks=10, tune_steps=100),
        "full": dict(seeds=(0,), n_tasks=50, steps=200, tune_tasks=20, tune_steps=100),  # >= 50 held-out tasks per setting
    },
    # ten times the training horizon; fewer tasks, since each run is five times longer (baselines tuned as in the chapters)
    "mlp_long": {
        "smoke": dict(seeds=(0,), n_tasks=2, steps=30, tune_tasks=2, tune_steps=20),
        "quick": dict(seeds=(0,), n_tasks=3, steps=1000, tune_tasks=10, tune_steps=100),
        "full": dict(seeds=(0,), n_tasks=5, steps=1000, tune_tasks=20, tune_steps=100),
    },
}


@dataclass(frozen=True)
class Settings:
    """Everything an experiment run depends on (recorded next to its results)."""

    name: str
    kind: str
    profile: str
    meta_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    n_tasks: int
    steps: int
    tune_tasks: int
    tune_steps: int
    meta_epochs: int
    trajectories_per_epoch: int
    tasks_per_trajectory: int
    train_steps: int
    unroll: int
    n_val_tasks: int
    errata_trajectories: int | None
    snapshot_budgets: tuple[int, ...]
    restarts: int
    init: str
    meta_lr: float | None
    seed: int
    device: str
    data_root: str | None
    results_dir: str

    def training(self) -> dict:
        """The meta-training arguments of one seed's LSTM (a checkpoint is reused only if these match)."""
        keys = ("meta_epochs", "trajectories_per_epoch", "tasks_per_trajectory", "train_steps", "unroll",
                "n_val_tasks", "meta_lr", "restarts")
        return {**{k: getattr(self, k) for k in keys}, **({"restart_rule": RESTART_RULE} if self.restarts else {})}

    @property
    def trajectories(self) -> int:
        """Trajectories each LSTM is meta-trained on."""
        return self.meta_epochs * self.trajectories_per_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def settings(name: str, kind: str, profile: str = "quick", *, meta_seeds=None, seeds=None, n_tasks=None, steps=None,
             meta_epochs=None, meta_lr=None, seed: int = 0, init: str = "thesis", device: str = "cpu", data_root=None,
             results_dir=None, **overrides) -> Settings:
    """Settings of experiment ``name`` for ``profile``; any argument given (not None) overrides the profile.

    ``seed`` draws the baselines' tuning tasks; ``seeds`` the held-out test tasks; ``meta_seeds`` the LSTMs'
    meta-training (one LSTM per seed); ``init`` how MLP optimizees start (see ``tasks.MLP_INITS``).
    """
    from l2l_core.tasks.families import MLP_INITS

    check_choice("kind", kind, TRAINING)
    check_choice("profile", profile, PROFILES)
    check_choice("device", device, DEVICES)
    check_choice("init", init, MLP_INITS)
    check_seed("seed", seed)
    values = {"errata_trajectories": None, "snapshot_budgets": (), **TRAINING[kind][profile], **EVALUATION[kind][profile]}
    given = dict(meta_seeds=meta_seeds, seeds=seeds, n_tasks=n_tasks, steps=steps, meta_epochs=meta_epochs,
                 **overrides)
    unknown = set(given) - set(values)
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(values)}")
    values.update({k: v for k, v in given.items() if v is not None})
    for key in ("seeds", "meta_seeds"):
        if isinstance(values[key], int) or not values[key]:
            raise ValueError(f"{key}={values[key]!r} must be a non-empty list of non-negative integers")
        values[key] = tuple(check_seed(f"{key} (each)", s) for s in values[key])
        if len(set(values[key])) != len(values[key]):
            raise ValueError(f"{key}={values[key]!r} repeats a seed; give distinct seeds")
    for key in ("n_tasks", "steps", "tune_tasks", "tune_steps", "trajectories_per_epoch", "tasks_per_trajectory",
                "train_steps", "unroll", "n_val_tasks"):
        check_int(key, values[key])
    check_int("meta_epochs", values["meta_epochs"], minimum=0)
    check_int("restarts", values["restarts"], minimum=0)
    if meta_lr is not None:
        check_positive_float("meta_lr", meta_lr)
    if values["errata_trajectories"] is not None:
        check_int("errata_trajectories", values["errata_trajectories"])
        total = values["meta_epochs"] * values["trajectories_per_epoch"]
        if values["errata_trajectories"] % values["trajectories_per_epoch"] or values["errata_trajectories"] > total:
            raise ValueError(f"errata_trajectories={values['errata_trajectories']} must be a multiple of "
                             f"trajectories_per_epoch={values['trajectories_per_epoch']} and at most the LSTMs' "
                             f"budget of {total} trajectories")
    if values["unroll"] > values["train_steps"]:
        raise ValueError(f"unroll={values['unroll']} must not exceed train_steps={values['train_steps']}")
    if data_root is not None and not Path(data_root).exists():
        raise ValueError(f"data_root={str(data_root)!r} does not exist; pass an existing folder or None "
                         "(then L2L_DATA_DIR, ../shared/data or ./data is used)")
    results_dir = Path(results_dir) if results_dir else REPO_ROOT / "results" / profile / name
    return Settings(name=name, kind=kind, profile=profile, meta_lr=meta_lr, seed=seed, init=init, device=device,
                    data_root=None if data_root is None else str(data_root), results_dir=str(results_dir), **values)


def load_settings(folder: str | Path) -> Settings:
    """The settings a chapter ran with, from the settings.json in its results ``folder``."""
    import json

    path = Path(folder) / "settings.json"
    if not path.is_file():
        raise FileNotFoundError(f"folder={str(folder)!r} holds no settings.json; give a chapter's results folder")
    saved = json.loads(path.read_text())
    return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def mlp_family(s: Settings, dataset: str = "mnist", hidden=(20,), activation: str = "sigmoid",
               init: str | None = None) -> MLPFamily:
    """The MLP family of these settings (``init``: the settings' unless given)."""
    return MLPFamily(dataset=dataset, hidden=tuple(hidden), activation=activation, data_root=s.data_root,
                     device=s.device, init=init or s.init)


def setting_label(family) -> str:
    """A reader's name for a task family, e.g. 'MNIST 784-20-10 sigmoid'."""
    if isinstance(family, QuadraticFamily):
        return f"quadratic {family.dim}-d ({family.distribution})"
    titles = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "emnist_letters": "EMNIST Letters",
              "cifar10": "CIFAR-10", "svhn": "SVHN"}
    inputs, classes = dataset_shape(family.dataset)
    sizes = (inputs, *family.hidden, classes)
    init = "" if family.init == "thesis" else f" ({family.init} init)"
    return f"{titles[family.dataset]} {'-'.join(map(str, sizes))} {family.activation}{init}"
