"""How often a meta-training run is stuck after its first epoch: the measurement behind the restart rule.

For each meta-training seed in ``--seeds`` (by default 5..24: none of the book's own 0-4), run exactly the first
epoch that a book run with that seed runs (its LSTM initialisation, its trajectories, the profile's settings) and
judge it by the book's rule (``meta_train.is_stuck``: validation not 1% below the better of the untrained score and
the do-nothing score). Writes ``stuck-<family>.csv`` (one row per seed; rewritten atomically after each, so an
interrupted run resumes) and ``provenance-<family>.json`` into ``--out`` (at the end; an interrupted run writes it when resumed). Chapter 2 shows the result.

    python tools/stuck_rate.py --init thesis   # 50-245 s per seed at 1 thread on the 2-vCPU AMD EPYC (Zen 4),
                                               # with a full run beside it (the seconds column of the table)
"""
from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch

from l2l_core.book.reproduction import machine_info
from l2l_core.experiments.settings import mlp_family, settings
from l2l_core.io import write_frame, write_json
from l2l_core.training.meta_train import RESTART_MIN_GAIN, is_stuck, meta_train
from l2l_core.training.trajectory import validation_scores

OUT = Path("book/data/stuck_rate")


def first_epoch(family, s, seed: int) -> dict:
    """One seed's first epoch of meta-training as a book run makes it, judged by the restart rule."""
    start = time.perf_counter()
    result = meta_train(family, epochs=1, trajectories_per_epoch=s.trajectories_per_epoch,
                        tasks_per_trajectory=s.tasks_per_trajectory, steps=s.train_steps, unroll=s.unroll,
                        n_val_tasks=s.n_val_tasks, seed=seed, progress=False)
    val_tasks = family.sample(s.n_val_tasks, seed, split="meta_val")  # the ones meta_train validated on
    _, do_nothing = validation_scores(result.last, val_tasks, s.train_steps)
    untrained, after = (float(result.history.loc[result.history.epoch == e, "val_loss_sum"].iloc[0]) for e in (0, 1))
    return dict(meta_seed=seed, untrained=untrained, do_nothing=do_nothing, after_first_epoch=after,
                stuck=is_stuck(after, min(untrained, do_nothing)), seconds=time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", choices=("thesis", "pytorch"), default="thesis")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--seeds", type=int, nargs=2, default=(5, 25), metavar=("FIRST", "STOP"),
                        help="meta-training seeds range(FIRST, STOP)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = settings("02_mnist", "mlp", args.profile, init=args.init)
    family = mlp_family(s)
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / f"stuck-{family.describe()}.csv"
    rows = pd.read_csv(table_path).to_dict("records") if table_path.exists() else []
    done = {r["meta_seed"] for r in rows}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = machine_info()  # the CPU and versions, as the reproduction page names them
    todo = [seed for seed in range(*args.seeds) if seed not in done]
    for seed in todo:
        rows.append(first_epoch(family, s, seed))
        write_frame(pd.DataFrame(rows), table_path)
        print(f"seed {seed}: {'stuck' if rows[-1]['stuck'] else 'learning'} "
              f"({rows[-1]['after_first_epoch']:.5g} after one epoch, do-nothing {rows[-1]['do_nothing']:.5g})",
              flush=True)
    table = pd.DataFrame(rows)
    if todo or not (args.out / f"provenance-{family.describe()}.json").exists():
        write_json(dict(family=family.describe(), profile=args.profile, seeds=sorted(int(x) for x in table.meta_seed),
                        trajectories_per_epoch=s.trajectories_per_epoch, tasks_per_trajectory=s.tasks_per_trajectory,
                        train_steps=s.train_steps, unroll=s.unroll, n_val_tasks=s.n_val_tasks,
                        restart_min_gain=RESTART_MIN_GAIN, stuck=int(table.stuck.sum()), runs=len(table),
                        code_commit=commit, machine=dict(zip(machine["item"], machine["value"])),
                        torch_threads=args.threads, torch=torch.__version__,
                        written=time.strftime("%Y-%m-%d %H:%M:%S")),
                   args.out / f"provenance-{family.describe()}.json")


if __name__ == "__main__":
    main()
