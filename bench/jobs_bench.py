"""`make bench`, second part: jobs on the engine and the scaling computation; adds to bench/results/<cpu>/results.json.

1. The default profile's meta-training as jobs on a Dask LocalCluster of 1 worker x 2 threads against
   2 workers x 1 thread, in one run: the full profile's MNIST seeds 0 and 1, cut to ``--epochs`` epochs each
   (a whole seed takes half an hour on a slow 2-core machine; the ratio is what matters).
2. Per-unit costs at 1 and 2 torch threads (one MNIST trajectory, one LSTM / baselines evaluation task-step,
   one quadratic trajectory and task-step) and, from them, ``l2l_core.runtime.scaling``'s expected wall time of the
   thesis and full profiles on 2, 16 and 64 cores (``--cores``), recorded beside this machine's CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from l2l_core.experiments import lstms, settings
from l2l_core.runtime import jobs
from l2l_core.runtime import scaling
from l2l_core.optimizers.baselines import Baseline
from l2l_core.evaluation.evaluate import evaluate, evaluate_together
from l2l_core.io import atomic_path
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.training.meta_train import train_trajectory
from l2l_core.runtime.machine import cpu_model, vector_isa
from l2l_core.tasks.families import MLPFamily, QuadraticFamily

from cpu_slug import results_dir
from run_bench import timed


FULL = settings.settings("02_mnist", "mlp", "full")  # the default profile's MNIST settings


def cluster_run(workers: int, threads: int, epochs: int, seeds=(0, 1)) -> float:
    """Seconds to meta-train ``seeds`` (full profile, ``epochs`` epochs) as jobs on ``workers`` x ``threads``."""
    os.environ[jobs.SCHEDULER_ENV], os.environ[jobs.THREADS_ENV] = "local", str(threads)
    jobs.start_local_cluster(workers)
    try:
        with tempfile.TemporaryDirectory() as folder:
            s = settings.settings("02_mnist", "mlp", "full", meta_seeds=seeds, meta_epochs=epochs, restarts=0,
                            errata_trajectories=epochs * FULL.trajectories_per_epoch, results_dir=folder)
            start = time.perf_counter()
            lstms.train_seeds(settings.mlp_family(s), s, folder, progress=False)
            return time.perf_counter() - start
    finally:
        jobs.close_clients()
        os.environ.pop(jobs.SCHEDULER_ENV), os.environ.pop(jobs.THREADS_ENV)


def unit_costs(threads: int, repeats: int) -> dict:
    """Seconds per unit of ``scaling.RATE_KEYS`` at ``threads`` torch threads (medians)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        def median(fn):
            return statistics.median(timed(fn, repeats))  # run_bench's: one warm-up, then repeats

        mnist, quad = MLPFamily(), QuadraticFamily()
        lstm = LSTMOptimizer(mnist.default_lstm)
        adam = torch.optim.Adam(lstm.parameters(), lr=0.01)
        one = mnist.sample(1, 0, split="meta_train")
        qlstm = LSTMOptimizer(quad.default_lstm)
        qadam = torch.optim.Adam(qlstm.parameters(), lr=0.003)
        eight = quad.sample(8, 0, split="meta_train")
        baselines = {name: Baseline(name, 0.01) for name in ("sgd", "rmsprop", "adam", "nag")}
        n, T = 20, 100
        return dict(
            mlp_trajectory=median(lambda: train_trajectory(lstm, adam, one)),
            mlp_lstm_step=median(lambda: evaluate(lstm, mnist, n_tasks=n, steps=T)) / (n * T),
            mlp_baselines_step=median(lambda: evaluate_together(baselines, mnist, n_tasks=n, steps=T)) / (n * T),
            quadratic_trajectory=median(lambda: train_trajectory(qlstm, qadam, eight)) / 8,
            quadratic_lstm_step=median(lambda: evaluate(qlstm, quad, n_tasks=100, steps=T)) / (100 * T))
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each seed in the 1x2 / 2x1 comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, nargs="*", default=[2, 16, 64])
    parser.add_argument("--out", default=str(results_dir(create=False) / "results.json"),
                        help="default bench/results/<this CPU>/results.json (run_bench.py's, added to)")
    args = parser.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    machine = {"cpu": cpu_model(), "instruction_sets": vector_isa(), "cores": os.cpu_count()}
    one_by_two = cluster_run(1, 2, args.epochs)
    two_by_one = cluster_run(2, 1, args.epochs)
    trajectories = args.epochs * FULL.trajectories_per_epoch
    print(f"meta-training, 2 seeds x {trajectories} trajectories: 1 worker x 2 threads {one_by_two:.1f} s, "
          f"2 workers x 1 thread {two_by_one:.1f} s (ratio {one_by_two / two_by_one:.2f})", flush=True)
    rates = {t: unit_costs(t, args.repeats) for t in (1, 2)}
    for t, r in rates.items():
        print(f"unit costs at {t} thread(s): " + ", ".join(f"{k} {v:.3g} s" for k, v in r.items()), flush=True)
    tables = [scaling.scaling_table(profile, rates[t], args.cores, t) for profile in ("quick", "full") for t in (1, 2)
              if all(c >= t for c in args.cores)]
    table = pd.concat(tables, ignore_index=True)
    print(table.round(1).to_string(index=False), flush=True)
    results["jobs"] = {"machine": machine, "workload": f"full profile, MNIST seeds 0 and 1, {trajectories} "
                       "trajectories each (+ validation), as Dask jobs",
                       "1x2_s": one_by_two, "2x1_s": two_by_one, "ratio_1x2_over_2x1": one_by_two / two_by_one}
    results["scaling"] = {"machine": machine, "unit_costs_s": {str(t): r for t, r in rates.items()},
                          "table": table.to_dict(orient="records")}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
