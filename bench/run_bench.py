"""`make bench`: time the engine's hot paths on this machine and write bench/results/<cpu>/results.json.

Workloads: one MNIST meta-training trajectory (100 steps, unroll 20, batch 128, 784-20-10 sigmoid,
preprocessing on) for the plain reference, for the engine with its fused LSTM layer kernels switched off
and on, median of ``--repeats``; evaluation of the LSTM (kernels on and off) and of the four baselines
on MNIST test tasks, one at a time and together (as ``compare`` runs them); one drop-in optimizer step
(LearnedOptimizer against Adam) on an MLP and on a small CNN with many tensors. All in one process, so the rows
compare like with like. The CPU, its vector instruction sets and the kernels' compile flags are recorded with the
numbers; ``make bench-avx2`` times the AVX2 build on an AVX-512 CPU (L2L_KERNEL_CFLAGS=-march=haswell) into
bench/results/<cpu>/results-avx2.json (``<cpu>``: ``bench/cpu_slug.py``). The floor: a large float32 matmul's
GFLOP/s at the same thread count; each LSTM workload's ``ratio_over_matmul_floor`` is how far its nominal GFLOP/s
stay below it.

GFLOP/s are nominal: the LSTM's matmul FLOPs of the mathematics (forward; a trajectory counts backward as
twice forward), whatever an implementation actually executes (the fused kernels recompute the gates in
backward, so they do ~4/3 of the nominal work).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import l2l_core
from l2l_core.optimizers import fused
from l2l_core.optimizers.baselines import Baseline
from l2l_core.evaluation.evaluate import evaluate, evaluate_together
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.training.meta_train import train_trajectory
from l2l_core.book.reproduction import kernel_status
from l2l_core.runtime.machine import cpu_model, vector_isa
from l2l_core.tasks.families import MLPFamily
from l2l_core.optimizers.drop_in import LearnedOptimizer

from cpu_slug import results_dir
from reference import PlainLSTMOptimizer, plain_trajectory

MATMUL_N = 2048  # the floor's square matmul: large enough to run at the BLAS's peak on these CPUs
# FLOPs of one coordinate's LSTM step (2 layers x 20 units, 2 inputs): gate matmuls + output
FORWARD_FLOP_PER_COORD = 2 * (22 * 80 + 40 * 80 + 20)


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mlp_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10))


def cnn_model():
    """A small CNN with many parameter tensors (the drop-in joins them into one LSTM call per step)."""
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16),
                         nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(16 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10))


def drop_in_steps(model_fn, make_optimizer, steps: int = 20, batch: int = 128) -> float:
    """Seconds per step (forward, backward, optimizer step) of a model on random 28x28 inputs."""
    torch.manual_seed(0)
    model = model_fn()
    opt = make_optimizer(model.parameters())
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(10, (batch,))
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-tasks", type=int, default=100)
    parser.add_argument("--eval-steps", type=int, default=200)
    parser.add_argument("--out", default=str(results_dir(create=False) / "results.json"),
                        help="default bench/results/<this CPU>/results.json")
    parser.add_argument("--no-compare-plain", dest="compare_plain", action="store_false",
                        help="skip the LSTM evaluation without fused kernels (about a minute)")
    args = parser.parse_args()

    family = MLPFamily(dataset="mnist", hidden=(20,), activation="sigmoid")
    tasks = family.sample(1, 0, split="meta_train")
    results = {"machine": {"cpu": cpu_model(), "instruction_sets": vector_isa(), "threads": torch.get_num_threads(),
                           "torch": torch.__version__, "l2l_core": l2l_core.__version__,
                           "fused_kernels": kernel_status(), "kernel_flags": " ".join(fused.compile_flags())},
               "workloads": {}}

    def record(name, seconds, flop=None, **extra):
        entry = {"median_s": statistics.median(seconds), "all_s": seconds, **extra}
        if flop:
            entry["gflop_per_s"] = flop / entry["median_s"] / 1e9
        results["workloads"][name] = entry
        print(f"{name:45s} {entry['median_s']:8.3f} s" + (f"  {entry['gflop_per_s']:6.1f} GFLOP/s" if flop else ""),
              flush=True)

    # the floor: a large float32 matmul at this thread count (what the LSTM's gate matmuls could reach at best)
    m = torch.randn(MATMUL_N, MATMUL_N)
    record(f"matmul floor, float32 {MATMUL_N}x{MATMUL_N}", timed(lambda: m @ m, args.repeats), 2 * MATMUL_N ** 3)
    floor_gflops = results["workloads"][f"matmul floor, float32 {MATMUL_N}x{MATMUL_N}"]["gflop_per_s"]

    # forward + backward through the LSTM ~ 3x forward, over 100 steps
    traj_flop = 3 * FORWARD_FLOP_PER_COORD * tasks.dim * 100
    plain = PlainLSTMOptimizer()
    plain_opt = torch.optim.Adam(plain.parameters(), lr=0.01)
    record("meta-train trajectory, plain reference", timed(lambda: plain_trajectory(plain, plain_opt, tasks), args.repeats),
           traj_flop)
    engine = LSTMOptimizer(family.default_lstm)
    engine_opt = torch.optim.Adam(engine.parameters(), lr=0.01)
    fused.set_enabled(False)
    record("meta-train trajectory, engine without fused kernels",
           timed(lambda: train_trajectory(engine, engine_opt, tasks), args.repeats), traj_flop)
    fused.set_enabled(True)
    record("meta-train trajectory, engine", timed(lambda: train_trajectory(engine, engine_opt, tasks), args.repeats),
           traj_flop)
    w = results["workloads"]
    w["meta-train trajectory, engine"]["ratio_engine_over_reference"] = (
        w["meta-train trajectory, engine"]["median_s"] / w["meta-train trajectory, plain reference"]["median_s"])
    w["meta-train trajectory, engine"]["ratio_over_matmul_floor"] = floor_gflops / w["meta-train trajectory, engine"]["gflop_per_s"]

    n, T = args.eval_tasks, args.eval_steps
    eval_flop = FORWARD_FLOP_PER_COORD * tasks.dim * n * T
    record(f"evaluate LSTM, {n} MNIST tasks x {T} steps",
           timed(lambda: evaluate(engine, family, n_tasks=n, steps=T), 1), eval_flop)
    w[f"evaluate LSTM, {n} MNIST tasks x {T} steps"]["ratio_over_matmul_floor"] = (
        floor_gflops / w[f"evaluate LSTM, {n} MNIST tasks x {T} steps"]["gflop_per_s"])
    if args.compare_plain:
        fused.set_enabled(False)
        record(f"evaluate LSTM without fused kernels, {n} MNIST tasks x {T} steps",
               timed(lambda: evaluate(engine, family, n_tasks=n, steps=T), 1), eval_flop)
        fused.set_enabled(True)
    baselines = {name: Baseline(name, 0.01) for name in ("sgd", "rmsprop", "adam", "nag")}
    record(f"evaluate 4 baselines one at a time, {n} MNIST tasks x {T} steps",
           [sum(timed(lambda: evaluate(b, family, n_tasks=n, steps=T), 1)[0] for b in baselines.values())])
    record(f"evaluate 4 baselines, {n} MNIST tasks x {T} steps",  # as compare() runs them
           timed(lambda: evaluate_together(baselines, family, n_tasks=n, steps=T), 1))
    for label, model_fn in (("MLP 784-20-10 sigmoid", mlp_model), ("small CNN, 10 tensors", cnn_model)):
        adam = [drop_in_steps(model_fn, lambda p: torch.optim.Adam(p, lr=0.01)) for _ in range(args.repeats)]
        record(f"drop-in step, Adam, {label}", adam)
        lstm = [drop_in_steps(model_fn, lambda p: LearnedOptimizer(p, lstm=engine)) for _ in range(args.repeats)]
        record(f"drop-in step, LearnedOptimizer, {label}", lstm,
               ratio_over_adam=statistics.median(lstm) / statistics.median(adam))
    results["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS {results['peak_rss_mb']:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
