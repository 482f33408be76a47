"""Where the fused kernels' time goes: the gate products against the cell's sigmoid and tanh.

The matmul floor of ``make bench`` counts only the gate products' FLOPs, but every coordinate's hidden unit also
evaluates five tanh-based functions (three sigmoids, two tanh; a 13/6 rational each, one division). This builds
the kernels' source three ways and times one layer's forward and backward at the sizes the book runs:

- ``as built``: the kernels as they are;
- ``no division``: the rational's division replaced by a multiplication (same instruction count otherwise);
- ``no tanh``: tanh (and so sigmoid) replaced by the identity: what remains is the gate products, the cell's few
  multiply-adds and the memory traffic, the most a faster tanh could reach.

Only timings: the variants compute wrong numbers on purpose and are never used elsewhere. The kernels' compile flags
(``L2L_KERNEL_CFLAGS`` included: ``-march=haswell`` builds for AVX2) are those of ``l2l_core.optimizers.fused``.
Run: ``python bench/kernel_parts.py [--threads 1 2] [--out FILE]``; prints a table and writes it as JSON, by default
to ``bench/results/<cpu>/kernel_parts.json`` (``bench/cpu_slug.py``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

import torch

from l2l_core.optimizers import fused

sys.path.insert(0, str(Path(__file__).parent))
from cpu_slug import results_dir  # noqa: E402
from run_bench import MATMUL_N, timed  # noqa: E402  (the floor's matmul size and timing, one definition)

TANH_BODY_END = "  return x * p / q;\n}"
VARIANTS = {
    "as built": [],
    "no division": [(TANH_BODY_END, "  return x * p * q;\n}")],
    "no tanh": [("static inline vf vtanh(vf x) {\n", "static inline vf vtanh(vf x) {\n  return x;\n")],
}
HIDDEN = 20
SIZES = {"MNIST trajectory, 1 task": 15_910, "evaluation, 100 tasks": 1_591_000}


def build(variant: str):
    """The kernels' source with ``variant``'s replacements, compiled with the kernels' flags."""
    source = fused._SOURCE_FILE.read_text()
    for old, new in VARIANTS[variant]:
        if old not in source:
            raise RuntimeError(f"variant {variant!r}: {old!r} is not in {fused._SOURCE_FILE.name}; update this bench")
        source = source.replace(old, new, 1)
    tag = hashlib.sha1((fused.build_tag() + source).encode()).hexdigest()[:10]
    return fused.compile_source(f"l2l_kernel_parts_{tag}", source)


def median_time(fn, repeats: int) -> float:
    return statistics.median(timed(fn, repeats))


def layer_times(module, inputs: int, n: int, repeats: int) -> tuple[float, float]:
    """Median seconds of one layer's forward and backward (dx, dh_prev, dc_prev, dW) over ``n`` coordinates."""
    g = torch.Generator().manual_seed(0)
    k1 = inputs + HIDDEN + 1
    W = (torch.randn(4 * HIDDEN, k1, generator=g) * 0.3).contiguous()
    x, h, c = (torch.randn(r, n, generator=g) for r in (inputs, HIDDEN, HIDDEN))
    h_out, c_out = torch.empty(HIDDEN, n), torch.empty(HIDDEN, n)
    dh, dc = torch.randn(HIDDEN, n, generator=g), torch.randn(HIDDEN, n, generator=g)
    dx, dh_prev, dc_prev, dW = torch.empty_like(x), torch.empty_like(h), torch.empty_like(c), torch.empty_like(W)
    forward = median_time(lambda: module.layer_forward(W, x, h, c, h_out, c_out), repeats)
    backward = median_time(lambda: module.layer_backward(W, x, h, c, dh, dc, dx, dh_prev, dc_prev, dW), repeats)
    return forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(results_dir(create=False) / "kernel_parts.json"),
                        help="default bench/results/<this CPU>/kernel_parts.json")
    args = parser.parse_args()
    modules = {v: build(v) for v in VARIANTS}
    from l2l_core.runtime.machine import cpu_model, vector_isa

    record = {"machine": {"cpu": cpu_model(), "instruction_sets": vector_isa(), "torch": torch.__version__,
                          "kernel_flags": " ".join(fused.compile_flags())}, "rows": []}
    for threads in args.threads:
        torch.set_num_threads(threads)
        m = torch.randn(MATMUL_N, MATMUL_N)
        floor = 2 * MATMUL_N ** 3 / median_time(lambda: m @ m, 5) / 1e9
        print(f"threads {threads}: matmul floor {floor:.0f} GFLOP/s ({MATMUL_N}^3 float32)", flush=True)
        for size_name, n in SIZES.items():
            for variant, module in modules.items():
                # a step = layer 1 (2 inputs) + layer 2 (20 inputs); nominal FLOPs: the gate products only,
                # backward counted as twice forward (as make bench counts a trajectory)
                t = [layer_times(module, inputs, n, args.repeats) for inputs in (2, HIDDEN)]
                fwd, bwd = t[0][0] + t[1][0], t[0][1] + t[1][1]
                flop = sum(2 * 4 * HIDDEN * (inputs + HIDDEN + 1) * n for inputs in (2, HIDDEN))
                row = dict(threads=threads, size=size_name, n=n, variant=variant, forward_ms=fwd * 1e3,
                           backward_ms=bwd * 1e3, forward_gflops=flop / fwd / 1e9, floor_gflops=floor,
                           ratio_over_floor=(fwd + bwd) / (3 * flop / floor / 1e9))
                record["rows"].append(row)
                print(f"  {size_name:26s} {variant:12s} forward {fwd * 1e3:8.2f} ms  backward {bwd * 1e3:8.2f} ms  "
                      f"{row['forward_gflops']:6.1f} GFLOP/s forward  {row['ratio_over_floor']:4.2f}x the floor",
                      flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
