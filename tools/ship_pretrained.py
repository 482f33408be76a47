"""Copy chapter 2's meta-trained LSTMs from a `make reproduce` results tree into the package, with provenance.

    python tools/ship_pretrained.py build/full/results [--name mnist] [--commit <sha of the code that ran>]
    python tools/ship_pretrained.py --store reference [--out build/ship-pretrained/results]

``--store`` ships the reference run's stored LSTMs (reference/lstms/02_mnist) before the whole book has been
evaluated from them: it first evaluates chapter 2's thesis arm alone (the ``full`` profile's tuned baselines and
every stored seed on its held-out tasks; nothing is trained) into ``--out``, then ships from there.

Writes l2l_core/optimizers/pretrained/<name>-seed<k>.pt (one per meta-training seed that learned: a seed still stuck on
the do-nothing score after its restarts is listed under ``not_shipped``) and <name>.json: the training settings,
the code version, each seed's selection (validation) score and held-out numbers, the book's claims on MNIST, and a
float64 reference run on a fixed tiny model (``l2l_core.optimizers.drop_in.reference_run``) that the tests re-compute.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from l2l_core import __version__
from l2l_core.optimizers.checkpoint import load_optimizer
from l2l_core.evaluation.claims import per_task_metric
from l2l_core.book.pages import collect_claims
from l2l_core.io import write_json
from l2l_core.training.meta_train import RESTART_MIN_GAIN, is_stuck, last_attempt
from l2l_core.optimizers.drop_in import reference_run
from l2l_core.optimizers.pretrained import FOLDER

SETTING = "MNIST 784-20-10 sigmoid"  # the thesis-initialised arm of chapter 2


def held_out(frame: pd.DataFrame, optimizer: str, meta_seed: int | None = None) -> float:
    """Mean over held-out tasks of the summed loss over the first 100 steps (the claims' sum@100)."""
    values = per_task_metric(frame[frame.setting == SETTING], "sum@100")
    values = values[values.optimizer == optimizer]
    if meta_seed is not None:
        values = values[values.meta_seed == meta_seed]
    return float(values.value.mean())


def do_nothing_score(lstm, settings: dict, seed: int) -> float:
    """The validation score of never moving, on the validation tasks this seed was selected on."""
    from l2l_core.experiments.settings import mlp_family, settings as make_settings
    from l2l_core.training.trajectory import validation_scores

    s = make_settings("02_mnist", "mlp", settings["profile"], init=settings["init"])
    tasks = mlp_family(s).sample(settings["n_val_tasks"], seed, split="meta_val")
    return validation_scores(lstm, tasks, settings["train_steps"])[1]


def evaluate_store(store: Path, out: Path) -> Path:
    """Chapter 2's thesis arm evaluated from the LSTMs stored in ``store`` into ``out/02_mnist`` (returns ``out``):
    the chapter's own protocol and claims at the reference profile, without its PyTorch-init contrast, which is not
    shipped. The LSTMs are read as another chapter's (``lstm_owner``), so a missing one is an error, never trained."""
    from l2l_core.experiments.reference import copy_stored_lstms
    from l2l_core.experiments.registry import CHAPTERS
    from l2l_core.experiments.settings import REFERENCE_PROFILE, setting_label
    from l2l_core.experiments.protocol import Experiment
    from l2l_core.experiments.setups import mnist_setup, mnist_snapshots

    copy_stored_lstms(out, store)
    s = CHAPTERS["02_mnist"].settings(REFERENCE_PROFILE, results_dir=str(out / "02_mnist"))
    families, claims = mnist_setup(s)
    thesis = families[0]
    arm = [c for c in claims if c.setting == setting_label(thesis)]
    Experiment(s, [thesis], arm, lstm_dir=s.results_dir, snapshot_budgets=mnist_snapshots(s),
               lstm_owner="02_mnist").run()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", help="build/<profile>/results of a finished run")
    parser.add_argument("--store", type=Path, help="ship the reference store's LSTMs (e.g. reference), evaluated first")
    parser.add_argument("--out", type=Path, default=Path("build/ship-pretrained/results"),
                        help="where --store's evaluation goes (default build/ship-pretrained/results)")
    parser.add_argument("--name", default="mnist")
    parser.add_argument("--commit", help="git commit of the code that made the results (default: that tree's HEAD)")
    args = parser.parse_args()
    if (args.results is None) == (args.store is None):
        parser.error("give either a results tree (build/<profile>/results) or --store DIR, not both")
    if args.store is not None:
        if not (args.store / "lstms" / "02_mnist").is_dir():
            parser.error(f"--store {args.store}: no lstms/02_mnist folder (the reference store is reference/)")
        args.results = evaluate_store(args.store, args.out)
    chapter = args.results / "02_mnist"
    if not (chapter / "settings.json").is_file():
        parser.error(f"{chapter} holds no finished chapter-2 run (settings.json missing); run make reproduce first")
    settings = json.loads((chapter / "settings.json").read_text())
    code_tree = Path(__file__).resolve().parent if args.store else args.results  # the code that made the results
    commit = args.commit or subprocess.run(["git", "-C", str(code_tree), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, check=True).stdout.strip()
    frame = pd.read_parquet(chapter / "losses.parquet")
    baselines = {b: held_out(frame, b) for b in ("SGD", "RMSprop", "Adam", "NAG")}
    seeds, not_shipped = {}, {}
    for stale in FOLDER.glob(f"{args.name}-seed*.pt"):
        stale.unlink()
    for path in sorted(chapter.glob("lstm-seed*.pt")):
        if "-at" in path.stem:
            continue
        seed = int(path.stem.removeprefix("lstm-seed"))
        lstm, info = load_optimizer(path)
        history = pd.read_csv(chapter / f"history-lstm-seed{seed}.csv")
        restarts = last_attempt(history)
        history = history[history["attempt"] == restarts] if "attempt" in history else history
        best = history.loc[history.val_loss_sum.idxmin()]
        seeds[seed] = {"family": info["metadata"]["family"], "restarts": restarts, "best_epoch": int(best.epoch),
                       "trajectories_at_selection": int(best.trajectories),
                       "validation_summed_loss": float(best.val_loss_sum),
                       "held_out_summed_loss_100_steps": held_out(frame, "LSTM", seed),
                       "reference_run_losses": reference_run(lstm)}
        recorded = chapter / f"provenance-lstm-seed{seed}.json"  # the reference store's: commit, CPU, seconds
        if recorded.is_file():
            seeds[seed]["meta_training"] = json.loads(recorded.read_text())
        do_nothing = do_nothing_score(lstm, settings, seed)
        if is_stuck(seeds[seed]["validation_summed_loss"], do_nothing):  # no use to anyone as an optimizer
            not_shipped[str(seed)] = (f"stuck: its best validation score {seeds.pop(seed)['validation_summed_loss']:.2f} "
                                      f"is not {RESTART_MIN_GAIN:.0%} below doing nothing ({do_nothing:.2f}) after "
                                      f"{restarts} restart(s); it stays in the book's verdicts")
            continue
        shutil.copyfile(path, FOLDER / f"{args.name}-seed{seed}.pt")
    default = min(seeds, key=lambda k: seeds[k]["validation_summed_loss"])
    claims = collect_claims(args.results)
    claims = claims[claims.experiment == "02 MNIST"][["setting", "claim", "verdict", "distance", "distance_lo",
                                                             "distance_hi", "near_threshold", "ours"]]
    training = {k: settings[k] for k in ("profile", "meta_epochs", "trajectories_per_epoch", "tasks_per_trajectory",
                                         "train_steps", "unroll", "n_val_tasks", "meta_lr", "init", "restarts")
                if k in settings}
    write_json({
        "description": f"LSTM optimizers meta-trained on {SETTING} (thesis initialisation), chapter 2 of the book",
        "config": load_optimizer(FOLDER / f"{args.name}-seed{default}.pt")[1]["config"],
        "training": training, "trajectories": settings["meta_epochs"] * settings["trajectories_per_epoch"],
        "meta_seeds": sorted(seeds), "default_seed": default,
        "default_seed_rule": "the seed with the lowest validation summed loss (selection never sees the test tasks)",
        "code": {"commit": commit, "l2l_core": __version__},
        "seeds": {str(k): v for k, v in sorted(seeds.items())},
        "not_shipped": not_shipped,
        "held_out_baselines_summed_loss_100_steps": baselines,
        "held_out": f"{settings['n_tasks']} MNIST-test tasks per evaluation seed {settings['seeds']}, batch 128",
        "book_claims": claims.to_dict("records"),
    }, FOLDER / f"{args.name}.json")
    print(f"shipped {len(seeds)} LSTMs as {args.name!r} (default seed {default}) into {FOLDER}")


if __name__ == "__main__":
    main()
