"""Meta-train one LSTM at the thesis' budget and keep its curve small, with provenance.

The book's default profile meta-trains less than the thesis did (see the method page); this measurement
shows what the longer budget buys. It writes, into ``--out``: ``history-<family>-seed<k>.csv`` (validation
loss vs trajectories seen), ``lstm-<family>-seed<k>.pt`` (the best LSTM, a few KB) and a provenance JSON
(arguments, code version, CPU, threads, time). Run: python tools/long_meta_training.py --family mnist
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from l2l_core.optimizers.checkpoint import save_optimizer
from l2l_core.io import write_frame, write_json
from l2l_core.training.meta_train import meta_train
from l2l_core.tasks.families import MLPFamily, QuadraticFamily

# the thesis code's main_loop budgets: epochs x iterations_to_optimize trajectories of one task each
THESIS_BUDGET = {
    "quadratic": dict(epochs=100, trajectories_per_epoch=100, tasks_per_trajectory=1, n_val_tasks=100),
    "mnist": dict(epochs=40, trajectories_per_epoch=50, tasks_per_trajectory=1, n_val_tasks=50),
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def write_partial(family, budget: dict, args, out: Path, stem: str) -> None:
    """History, best LSTM and provenance from the training state of a run that has not finished."""
    import pandas as pd

    from l2l_core.optimizers.lstm import LSTMOptimizer

    state = torch.load(out / f"state-{stem}.pt", map_location="cpu", weights_only=False)
    history = pd.DataFrame(state["rows"])
    write_frame(history, out / f"history-{stem}.csv")
    lstm = LSTMOptimizer(family.default_lstm, seed=args.seed)
    lstm.load_state_dict(state["best_state"])
    save_optimizer(out / f"lstm-{stem}.pt", lstm, seed=args.seed, family=family.describe(),
                   training=dict(budget, steps=100, unroll=20), best_epoch=state["best_epoch"])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_json(dict(family=family.describe(), seed=args.seed, steps=100, unroll=20, **budget, code_commit=commit,
                    cpu=cpu_model(), torch_threads=args.threads, torch=torch.__version__,
                    stopped_early_after_trajectories=int(history.trajectories.max()),
                    seconds=float(history.seconds.sum()), best_epoch=state["best_epoch"],
                    best_val_loss_sum=float(state["best_score"]), written=time.strftime("%Y-%m-%d %H:%M:%S")),
               out / f"provenance-{stem}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--family", choices=sorted(THESIS_BUDGET), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="book/data/long_run")
    parser.add_argument("--partial", action="store_true",
                        help="write what a still-unfinished run's training state holds (its curve so far and the best "
                             "LSTM so far), marked as stopped early in the provenance")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    family = QuadraticFamily() if args.family == "quadratic" else MLPFamily()
    budget = THESIS_BUDGET[args.family]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{family.describe()}-seed{args.seed}"
    if args.partial:
        write_partial(family, budget, args, out, stem)
        return
    start = time.perf_counter()
    result = meta_train(family, seed=args.seed, steps=100, unroll=20, checkpoint_path=out / f"state-{stem}.pt", **budget)
    seconds = time.perf_counter() - start
    write_frame(result.history, out / f"history-{stem}.csv")
    save_optimizer(out / f"lstm-{stem}.pt", result.best, seed=args.seed, family=family.describe(),
                   training=dict(budget, steps=100, unroll=20), best_epoch=result.best_epoch)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_json(dict(family=family.describe(), seed=args.seed, steps=100, unroll=20, **budget, code_commit=commit,
                    cpu=cpu_model(), torch_threads=args.threads, torch=torch.__version__, seconds=seconds,
                    best_epoch=result.best_epoch, best_val_loss_sum=float(result.history.val_loss_sum.min()),
                    written=time.strftime("%Y-%m-%d %H:%M:%S")), out / f"provenance-{stem}.json")
    (out / f"state-{stem}.pt").unlink(missing_ok=True)
    print(json.dumps(dict(stem=stem, seconds=round(seconds), best=float(result.history.val_loss_sum.min()))))


if __name__ == "__main__":
    main()
