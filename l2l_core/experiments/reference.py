"""The reference run: every LSTM of the book's ``full`` profile meta-trained once, at the thesis' budgets, and stored.

The stored LSTMs live in ``reference/lstms/<chapter>/`` under the same file names a chapter's results folder uses,
so a chapter reuses them as it reuses its own (``SeedJob.done``). Each LSTM is one job; a job writes its curve,
snapshots and LSTM (``SeedJob``) and then its provenance (commit, CPU, torch, threads, seconds, attempts): only
a job with its provenance is done, so a job killed half-way is redone, never read as done.
Run: ``python -m l2l_core.experiments.reference train`` (``--chapter``, ``--seeds``, ``--out``; resumes job by job).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from l2l_core.runtime import jobs
from l2l_core.runtime.machine import cpu_facts
from l2l_core.io import atomic_path, write_json
from l2l_core.tasks.families import QuadraticFamily
from l2l_core.training.meta_train import last_attempt

from l2l_core.experiments.setups import SIDE_ARM_META_SEEDS, mnist_setup, mnist_snapshots
from l2l_core.experiments.protocol import lstm_name
from l2l_core.experiments.lstms import SeedPlan, plan_seeds
from l2l_core.experiments.settings import REFERENCE_DIR, REFERENCE_PROFILE, REPO_ROOT, settings

PROFILE = REFERENCE_PROFILE
# The order the jobs start in: seeds 0-4 of the main MNIST arm, the quadratics and chapter 02's PyTorch-init contrast,
# then the main arm's seeds 5-9 (the evidence of chapters 02-06 and 09), then the errata arms' seeds 0-4.
ORDER = (("02_mnist", (0, 1, 2, 3, 4)), ("01_quadratic", (0, 1, 2, 3, 4)),
         ("02_mnist_pytorch_init", (0, 1, 2, 3, 4)), ("02_mnist", (5, 6, 7, 8, 9)),
         ("08_errata", (0, 1, 2, 3, 4)))
ARMS = tuple(dict.fromkeys(arm for arm, _ in ORDER))

def code_version() -> dict:
    """The commit this checkout is at, and whether its tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "l2l_core"))}


def machine_record(threads: int) -> dict:
    """What decides a computation's rounding here (``MACHINE_KEYS``, with the core count), for a provenance file."""
    import torch

    from l2l_core.optimizers import fused

    return {**cpu_facts(), "torch": torch.__version__, "threads": threads, "fused_kernels": fused.kernels() is not None,
            "kernel_flags": " ".join(fused.compile_flags())}


@dataclass(frozen=True)
class RecordedJob:
    """A ``SeedJob`` that also writes ``provenance-<name>-seed<k>.json`` after the LSTM: done only with it."""

    job: object  # SeedJob
    chapter: str
    code: dict

    def provenance_path(self, seed: int) -> Path:
        return self.job.folder / f"provenance-{self.job.name}-seed{seed}.json"

    def done(self, seed: int) -> bool:
        return self.provenance_path(seed).is_file() and self.job.done(seed)

    def __call__(self, seed: int) -> None:
        import torch

        started, start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
        self.job(seed)
        seconds = time.perf_counter() - start
        _, _, history_path = self.job.paths(seed)
        history = pd.read_csv(history_path)
        write_json({"chapter": self.chapter, "name": self.job.name, "meta_seed": seed, **self.code,
                    **machine_record(torch.get_num_threads()), "started_utc": started, "seconds": round(seconds, 1),
                    "attempts": last_attempt(history) + 1, "training": self.job.training,
                    "family": self.job.family.describe(), "best_val_loss_sum": float(history.val_loss_sum.min())},
                   self.provenance_path(seed))


def arm_plans(out: Path = REFERENCE_DIR, arms=ARMS, seeds=None, profile: str = PROFILE) -> list[tuple[RecordedJob, tuple, str]]:
    """The reference run's jobs as ``(job, seeds still to train, label)`` batches, in start order."""
    from l2l_core.experiments.errata import defect_arms as errata_arms, errata_budget

    code = code_version()
    lstms = Path(out) / "lstms"
    batches = []

    def add(chapter, plan: SeedPlan, label):
        job = RecordedJob(plan.job, chapter, code)
        todo = tuple(k for k in plan.seeds if not job.done(k))
        batches.append((job, todo, label))

    order = ORDER if seeds is None else tuple((arm, tuple(seeds)) for arm in ARMS)
    for arm, wanted in order:
        if arm not in arms:
            continue
        chapter = arm.split("_pytorch")[0]
        folder = lstms / chapter
        if arm == "01_quadratic":
            s = settings("01_quadratic", "quadratic", profile)
            add(chapter, plan_seeds(QuadraticFamily(), s, folder, seeds=wanted, progress=False), arm)
        elif arm.startswith("02_mnist"):
            s = settings("02_mnist", "mlp", profile)
            main, contrast = mnist_setup(s)[0]
            family = contrast if arm.endswith("pytorch_init") else main
            wanted = tuple(k for k in wanted if family is main or k < SIDE_ARM_META_SEEDS)
            if wanted:
                add(chapter, plan_seeds(family, s, folder, lstm_name(family, main), seeds=wanted, progress=False,
                                        snapshot_budgets=mnist_snapshots(s)), arm)
        elif arm == "08_errata":
            s = settings("08_errata", "mlp", profile)
            budget = errata_budget(s)
            for name, (family, options) in errata_arms(s).items():
                add(chapter, plan_seeds(family, s, folder, name, seeds=wanted, progress=False, **options,
                                        trajectories=budget["trajectories"]), f"{arm} {name}")
    return batches


def copy_stored_lstms(results_root: Path, out: Path = REFERENCE_DIR) -> list[Path]:
    """Put the stored LSTMs (with their curves, snapshots and provenance) into a ``full`` run's results folders,
    ``<results_root>/<chapter>/``, so that its chapters reuse them (``SeedJob.done``) instead of training them
    again. A file already there is never replaced (a chapter that trained its own keeps it); training states are
    not copied. Returns the files copied."""
    import shutil

    copied = []
    for stored in sorted(Path(out, "lstms").glob("*/*")):
        if stored.name.startswith(("training_state", ".")) or stored.suffix not in (".pt", ".csv", ".json"):
            continue
        target = Path(results_root) / stored.parent.name / stored.name
        if target.exists():
            continue
        with atomic_path(target) as tmp:  # a chapter never reads a half-copied file
            shutil.copy2(stored, tmp)
        copied.append(target)
    return copied


# What decides an LSTM's rounding: on a machine equal in all of these, a retrained LSTM equals the stored one bit for bit
MACHINE_KEYS = ("cpu", "cpu_family_model", "instruction_sets", "kernel_flags", "torch", "threads")


def compare_lstm(new: Path, stored: Path) -> dict:
    """One retrained LSTM file beside the stored one: identical weights, else the largest relative difference of a
    weight tensor (max |new - stored| / max |stored|), and both runs' best validation scores where their curves are
    there."""
    import torch

    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (new, stored))
    same_keys = a["state_dict"].keys() == b["state_dict"].keys()
    gap = max((float((a["state_dict"][k] - v).abs().max() / v.abs().max().clamp_min(1e-30))
               for k, v in b["state_dict"].items()), default=0.0) if same_keys else float("inf")
    row = {"file": f"{stored.parent.name}/{stored.name}", "identical": same_keys and gap == 0.0,
           "largest relative difference": gap, "same settings": a["metadata"] == b["metadata"]}
    stem = re.sub(r"-at\d+$", "", stored.stem)  # a snapshot (<name>-seed<k>-at<B>) shares its LSTM's curve
    machines = []
    for label, folder in (("new", new.parent), ("stored", stored.parent)):
        history = folder / f"history-{stem}.csv"
        if history.is_file():
            row[f"best validation ({label})"] = float(pd.read_csv(history).val_loss_sum.min())
        provenance = folder / f"provenance-{stem}.json"
        facts = json.loads(provenance.read_text()) if provenance.is_file() else {}
        row[f"CPU ({label})"] = f"{facts.get('cpu')} {facts.get('cpu_family_model')}" if facts else "not recorded"
        machines.append(tuple(facts.get(k) for k in MACHINE_KEYS) if facts else None)
    row["same machine"] = machines[0] is not None and machines[0] == machines[1]
    return row


def compare(new_out: Path, stored_out: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Every LSTM file under ``new_out/lstms`` (``make retrain``) beside the stored one of the same name. Where both
    were trained on the same machine (``MACHINE_KEYS``) they must be identical; elsewhere the table says how far
    they differ (meta-training is chaotic: another rounding trains another LSTM, an equally valid draw)."""
    rows = []
    for new in sorted(Path(new_out, "lstms").glob("*/*.pt")):
        if new.name.startswith("training_state"):
            continue
        stored = Path(stored_out, "lstms", new.parent.name, new.name)
        rows.append(compare_lstm(new, stored) if stored.is_file()
                    else {"file": f"{new.parent.name}/{new.name}", "identical": False, "note": "not stored"})
    if not rows:
        raise FileNotFoundError(f"--out {str(new_out)!r} holds no retrained LSTM (lstms/<chapter>/*.pt); run "
                                "`make retrain` (or `... reference train --out DIR`) first")
    return pd.DataFrame(rows)


def train(out: Path = REFERENCE_DIR, arms=ARMS, seeds=None, profile: str = PROFILE) -> None:
    """Meta-train every reference LSTM still missing under ``out`` (jobs on ``L2L_SCHEDULER``, default local)."""
    os.environ.setdefault(jobs.SCHEDULER_ENV, "local")
    batches = [b for b in arm_plans(out, arms, seeds, profile) if b[1]]
    for job, todo, label in batches:
        jobs.report(f"[reference] {label}: seeds {list(todo)} to train into {job.job.folder}")
    if not batches:
        jobs.report("[reference] every LSTM is trained")
        return
    jobs.run_batches(batches)
    jobs.close_clients()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "status", "compare"],
                        help="train the missing LSTMs into --out; status: what is missing; compare: every LSTM in "
                             "--out beside the one of the same name in --against (exit 1 if one trained on the "
                             "same machine differs)")
    parser.add_argument("--arm", action="append", choices=ARMS, help="only these arms (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these meta-training seeds")
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR)
    parser.add_argument("--profile", default=PROFILE, help="the book's 'full' (default); 'smoke' to check it")
    parser.add_argument("--against", type=Path, default=REFERENCE_DIR, help="compare: the stored run (reference/)")
    args = parser.parse_args(argv)
    arms = tuple(args.arm or ARMS)
    if args.command == "compare":
        table = compare(args.out, args.against)
        print(table.to_string(index=False))
        broken = table[table["same machine"].fillna(False).astype(bool) & ~table.identical.astype(bool)]
        print(f"[reference] {int(table.identical.sum())} of {len(table)} LSTM files identical to {args.against}; "
              f"{len(broken)} differ although trained on the same machine")
        raise SystemExit(1 if len(broken) else 0)
    if args.command == "status":
        for job, todo, label in arm_plans(args.out, arms, args.seeds, args.profile):
            print(f"{label}: to train {list(todo)}")
        return
    train(args.out, arms, args.seeds, args.profile)


if __name__ == "__main__":
    main()
