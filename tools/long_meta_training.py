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

from l2l_core.checkpoint import save_optimizer
from l2l_core.io import write_frame, write_json
from l2l_core.meta_train import meta_train
from l2l_core.tasks import MLPFamily, QuadraticFamily

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--family", choices=sorted(THESIS_BUDGET), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="book/data/long_run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    family = QuadraticFamily() if args.family == "quadratic" else MLPFamily()
    budget = THESIS_BUDGET[args.family]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{family.describe()}-seed{args.seed}"
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
