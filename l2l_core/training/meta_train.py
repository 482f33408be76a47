"""Meta-training: truncated backpropagation through optimizee trajectories, Adam on the LSTM weights.

One trajectory = ``steps`` optimizee updates split into unrolls of ``unroll`` steps. Within an
unroll the meta-loss is the sum of the optimizee losses f_t(theta_t) after each update (mean over
the tasks of the trajectory); after it, Adam updates the LSTM, and theta and the LSTM state are
detached (the graph is cut, the values carried on). Every one of the ``steps`` updates is thus
meta-trained. Gradients fed to the LSTM are detached (no second derivatives, as in the paper)
while theta_{t+1} = theta_t + g_t stays differentiable.

Over 300 lines on purpose: the trajectory, selection on validation, restarts and resuming are one loop whose
state (attempt, best so far, snapshots) they share.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from l2l_core.optimizers.checkpoint import atomic_torch_save
from l2l_core.checks import NonFiniteWarning, check_int, check_positive_float, check_seed
from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer
from l2l_core.evaluation.runners import run_learned
from l2l_core.seeding import derive_seed
from l2l_core.tasks.families import TaskBatch


Schedule = Callable[[int, int], list[tuple[range, int]]]  # (steps, unroll) -> segments, as unroll_segments


def unroll_segments(steps: int, unroll: int) -> list[tuple[range, int]]:
    """(update indices, k) of each unroll: the unroll runs those updates and meta-trains its first k (their losses
    form its meta-loss, then the LSTM takes one meta-step); together they cover range(steps) once, in order.

    Update t turns theta_t into theta_{t+1}. This schedule meta-trains every update (k = the unroll's length).
    It is ``meta_train``'s default ``schedule``; another (same arguments, same form) trains other updates (the
    errata chapter's defect c).
    """
    check_int("steps", steps)
    check_int("unroll", unroll)
    if unroll > steps:
        raise ValueError(f"unroll={unroll} must not exceed steps={steps}")
    return [(range(s, min(s + unroll, steps)), min(unroll, steps - s)) for s in range(0, steps, unroll)]


@dataclass
class TrajectoryResult:
    """Meta-losses of each unroll (mean over tasks, summed over its steps) and how many were skipped."""

    unroll_losses: list[float]
    skipped_updates: int


def train_trajectory(lstm: LSTMOptimizer, meta_optimizer: torch.optim.Optimizer, tasks: TaskBatch,
                     steps: int = 100, unroll: int = 20, grad_clip: float | None = None,
                     schedule: Schedule = unroll_segments) -> TrajectoryResult:
    """Meta-train ``lstm`` on one trajectory of ``tasks`` (see the module docstring).

    Numerical guard: a NaN/inf optimizee loss or meta-gradient is reported (NonFiniteWarning, with the
    step and task seed) and that meta-update is not applied; since theta cannot recover, the rest of the
    trajectory is dropped too (all counted in ``skipped_updates``). ``grad_clip`` optionally clips the
    meta-gradient norm.
    """
    segments = schedule(steps, unroll)
    theta = tasks.initial_params().requires_grad_(True)
    loss = tasks.loss(theta, 0)
    (grad,) = torch.autograd.grad(loss.sum(), theta)
    theta = theta.detach()
    state = lstm.initial_state(theta.numel(), device=theta.device, dtype=theta.dtype)
    unroll_losses, skipped = [], 0
    for k, (segment, n_trained) in enumerate(segments):
        meta_loss = theta.new_zeros(())
        first_bad = None
        trained = n_trained > 0
        for t in segment:
            update, state = lstm.step_tasks(grad, state, tasks.tensor_sizes)
            if t >= segment.start + n_trained:  # an untrained update: computed, never given a meta-gradient
                update = update.detach()
            theta = theta + update
            if not theta.requires_grad:  # an untrained start: the gradient fed to the LSTM still needs theta's graph
                theta.requires_grad_(True)
            loss = tasks.loss(theta, t + 1)
            if t < segment.start + n_trained:
                meta_loss = meta_loss + loss.mean()
            if first_bad is None and not torch.isfinite(loss).all():
                first_bad = (t + 1, [tasks.task_seeds[i] for i in (~torch.isfinite(loss)).nonzero().flatten().tolist()])
            if t + 1 < steps:
                (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True)
        meta_optimizer.zero_grad(set_to_none=True)
        bad_grads = []
        if first_bad is None and trained:
            meta_loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(lstm.parameters(), grad_clip)
            bad_grads = [n for n, p in lstm.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        unroll_losses.append(meta_loss.item())
        if first_bad is not None or bad_grads:
            # policy: never apply a non-finite meta-update; the trajectory's theta cannot recover, so stop it
            skipped += len(segments) - k
            where = (f"optimizee loss at step {first_bad[0]} for task seed(s) {first_bad[1]}" if first_bad
                     else f"meta-gradient of {bad_grads} in unroll {k} (steps {segment.start + 1}-{segment.stop})")
            warnings.warn(f"non-finite {where}: meta-update skipped and the rest of this trajectory dropped",
                          NonFiniteWarning, stacklevel=2)
            break
        if trained:
            meta_optimizer.step()
        theta = theta.detach()
        state = tuple(s.detach() for s in state)
    return TrajectoryResult(unroll_losses, skipped)


def validation_score(lstm: LSTMOptimizer, tasks: TaskBatch, steps: int) -> float:
    """Mean over tasks of the summed loss over steps 0..T-1 (the thesis' metric); inf if it diverges."""
    return _validation_scores(lstm, tasks, steps)[0]


def _validation_scores(lstm: LSTMOptimizer, tasks: TaskBatch, steps: int) -> tuple[float, float]:
    """The validation score and the do-nothing score (T x the mean step-0 loss: an optimizer that never moves)."""
    losses, _ = run_learned(lstm, tasks, steps)
    total = losses[:steps].sum(0).mean().item()
    return (total if math.isfinite(total) else math.inf), steps * losses[0].mean().item()


@dataclass
class MetaTrainResult:
    """The best LSTM by validation score, the LSTM after the last epoch, and the per-epoch history."""

    best: LSTMOptimizer
    last: LSTMOptimizer
    history: pd.DataFrame
    best_epoch: int
    resumed_after_epoch: int = 0  # 0: trained from scratch
    # budget (trajectories) -> the best LSTM among the validations made within that budget: exactly what a
    # run with that smaller budget would have selected (its trajectories are the same ones, in the same order)
    best_within: dict = None
    restarts: int = 0  # fresh LSTMs started because an earlier one was stuck (``meta_train(restarts=...)``)

    def best_within_budget(self, trajectories: int) -> LSTMOptimizer:
        """The LSTM that a run of ``trajectories`` trajectories (a budget given to ``snapshot_budgets``) selects."""
        if trajectories not in (self.best_within or {}):
            raise ValueError(f"trajectories={trajectories} is not a recorded budget; recorded: "
                             f"{sorted(self.best_within or {})}")
        return self.best_within[trajectories]


TRAINING_STATE_FORMAT = "l2l-meta-train-state/1"


def _load_training_state(path, signature: dict) -> dict | None:
    """The saved training state at ``path`` if it exists; refuses one written for other arguments."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"checkpoint_path={str(path)!r} is not a readable training state (truncated?): {err}") from err
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise ValueError(f"checkpoint_path={str(path)!r} is not an l2l meta-training state")
    if state["signature"] != signature:
        diff = {k: (state["signature"].get(k), v) for k, v in signature.items() if state["signature"].get(k) != v}
        raise ValueError(f"checkpoint_path={str(path)!r} was written for other arguments (saved, now): {diff}; "
                         "delete it or pass another checkpoint_path")
    return state


def meta_train(family, config: LSTMConfig | None = None, meta_lr: float | None = None, epochs: int = 10,
               trajectories_per_epoch: int = 20, tasks_per_trajectory: int = 1, steps: int = 100,
               unroll: int = 20, n_val_tasks: int = 20, seed: int = 0, grad_clip: float | None = None,
               progress: bool = True, checkpoint_path: str | Path | None = None,
               schedule: Schedule = unroll_segments, snapshot_budgets=(), restarts: int = 0) -> MetaTrainResult:
    """Meta-train an LSTM optimizer on ``family``'s meta-train tasks, selecting by meta-validation.

    ``config`` and ``meta_lr`` default to the family's (no preprocessing, scale 1.0, lr 0.003 on
    quadratics; preprocessing, scale 0.1, lr 0.01 on MLPs, as in the thesis code). Epoch 0 of the
    history is the untrained LSTM; its ``trajectories`` column counts the trajectories seen (the x axis
    of a meta-training curve). Same arguments and seed -> the same numbers.

    ``snapshot_budgets`` (trajectory counts, multiples of ``trajectories_per_epoch``) also keep the LSTM
    that a shorter run would have selected (``MetaTrainResult.best_within_budget``), so one long run
    serves experiments with smaller budgets.

    With ``checkpoint_path``, the whole training state (LSTM, Adam, best so far, history) is written
    atomically after every epoch; calling again with the same arguments resumes after the last
    finished epoch and ends with the same result as an uninterrupted run (trajectory tasks are
    functions of (seed, epoch, index), so nothing else needs saving).

    ``restarts``: an LSTM still stuck after its first epoch (validation not ``RESTART_MIN_GAIN`` below the
    better of its untrained score and the do-nothing score: on the thesis-initialised MLP some initialisations
    learn to leave the optimizee on its plateau) is replaced by a fresh one (initialised from
    ``derive_seed("restart", seed, k)``, new Adam, its own trajectories: ``trajectory_seed``), at most ``restarts`` times. The history keeps every attempt (column ``attempt``; its
    ``trajectories`` counts all trajectories seen); selection and ``snapshot_budgets`` are the last attempt's.
    """
    config = config or family.default_lstm
    meta_lr = family.default_meta_lr if meta_lr is None else check_positive_float("meta_lr", meta_lr)
    check_int("epochs", epochs, minimum=0)
    check_int("trajectories_per_epoch", trajectories_per_epoch)
    check_int("tasks_per_trajectory", tasks_per_trajectory)
    check_int("n_val_tasks", n_val_tasks)
    check_seed("seed", seed)
    check_int("restarts", restarts, minimum=0)
    schedule(steps, unroll)
    if grad_clip is not None:
        check_positive_float("grad_clip", grad_clip)
    for budget in snapshot_budgets:
        check_int("snapshot_budgets (each)", budget)
        if budget % trajectories_per_epoch or budget > epochs * trajectories_per_epoch:
            raise ValueError(f"snapshot_budgets contains {budget}; each must be a multiple of "
                             f"trajectories_per_epoch={trajectories_per_epoch} and at most epochs x "
                             f"trajectories_per_epoch={epochs * trajectories_per_epoch}")

    device = getattr(family, "device", "cpu")

    def fresh(attempt: int):
        net = LSTMOptimizer(config, seed=seed if attempt == 0 else derive_seed("restart", seed, attempt)).to(device)
        return net, torch.optim.Adam(net.parameters(), lr=meta_lr)

    val_tasks = family.sample(n_val_tasks, seed, split="meta_val")
    signature = dict(family=family.describe(), config=config.to_dict(), meta_lr=meta_lr, epochs=epochs,
                     trajectories_per_epoch=trajectories_per_epoch, tasks_per_trajectory=tasks_per_trajectory,
                     steps=steps, unroll=unroll, n_val_tasks=n_val_tasks, seed=seed, grad_clip=grad_clip,
                     **({"schedule": schedule.__name__} if schedule is not unroll_segments else {}),
                     **({"snapshot_budgets": sorted(snapshot_budgets)} if snapshot_budgets else {}),
                     **({"restarts": restarts, "restart_rule": RESTART_RULE} if restarts else {}))
    saved = _load_training_state(checkpoint_path, signature) if checkpoint_path else None
    if saved:
        attempt = saved.get("attempt", 0)
        lstm, meta_optimizer = fresh(attempt)
        lstm.load_state_dict(saved["lstm"])
        meta_optimizer.load_state_dict(saved["meta_optimizer"])
        best_score, best_state, best_epoch = saved["best_score"], saved["best_state"], saved["best_epoch"]
        rows, first_epoch = saved["rows"], saved["epoch"] + 1
        within, reference = saved["best_within"], saved.get("reference", saved.get("untrained"))
    else:
        attempt, rows, first_epoch = 0, [], 1

    def start_attempt():
        """A fresh LSTM (attempt ``attempt``): its untrained score is epoch 0 of its curve.

        Returns the LSTM, its Adam, its untrained score (where selection starts) and the restart rule's
        reference: the better of that score and the do-nothing score, so an attempt that starts worse than
        not moving at all cannot pass for learning by merely getting back to the plateau."""
        net, optimizer = fresh(attempt)
        score, do_nothing = _validation_scores(net, val_tasks, steps)
        rows.append(dict(epoch=0, trajectories=_seen(rows), meta_loss=math.nan, val_loss_sum=score,
                         skipped_updates=0, seconds=0.0, attempt=attempt))
        return net, optimizer, score, min(score, do_nothing), copy.deepcopy(net.state_dict())

    def save_state(epoch):
        if checkpoint_path:
            atomic_torch_save(dict(format=TRAINING_STATE_FORMAT, signature=signature, epoch=epoch, attempt=attempt,
                                   reference=reference, lstm=lstm.state_dict(),
                                   meta_optimizer=meta_optimizer.state_dict(), best_state=best_state,
                                   best_score=best_score, best_epoch=best_epoch, rows=rows, best_within=within),
                              checkpoint_path)

    if not saved:
        lstm, meta_optimizer, best_score, reference, best_state = start_attempt()
        best_epoch, within = 0, {}
    bar = tqdm(total=(epochs + attempt) * trajectories_per_epoch,
               initial=(first_epoch - 1 + attempt) * trajectories_per_epoch,
               desc=f"meta-train {family.describe()}", disable=not progress)
    epoch = first_epoch
    while epoch <= epochs:
        start, losses, skipped = time.perf_counter(), [], 0
        for j in range(trajectories_per_epoch):
            tasks = family.sample(tasks_per_trajectory, trajectory_seed(seed, attempt, epoch, j), split="meta_train")
            result = train_trajectory(lstm, meta_optimizer, tasks, steps, unroll, grad_clip, schedule)
            losses.append(sum(result.unroll_losses))
            skipped += result.skipped_updates
            bar.update(1)
        score = validation_score(lstm, val_tasks, steps)
        if score < best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(lstm.state_dict()), epoch
        rows.append(dict(epoch=epoch, trajectories=_seen(rows) + trajectories_per_epoch,
                         meta_loss=sum(losses) / len(losses), val_loss_sum=score, skipped_updates=skipped,
                         seconds=time.perf_counter() - start, attempt=attempt))
        bar.set_postfix(val=f"{score:.4g}", best=f"{best_score:.4g}", **({"attempt": attempt} if attempt else {}))
        if epoch == 1 and attempt < restarts and is_stuck(score, reference):
            attempt += 1
            bar.total += trajectories_per_epoch
            bar.refresh()
            lstm, meta_optimizer, best_score, reference, best_state = start_attempt()
            best_epoch, within = 0, {}
            save_state(0)
            continue  # epoch stays 1: the new LSTM starts its own first epoch, on its own trajectories
        if epoch * trajectories_per_epoch in snapshot_budgets:
            within[epoch * trajectories_per_epoch] = dict(state=copy.deepcopy(best_state), epoch=best_epoch)
        save_state(epoch)
        epoch += 1
    bar.close()
    def restored(state):
        net = LSTMOptimizer(config, seed=seed).to(device)
        net.load_state_dict(state)
        return net

    return MetaTrainResult(restored(best_state), lstm, pd.DataFrame(rows), best_epoch, first_epoch - 1,
                           {budget: restored(w["state"]) for budget, w in within.items()}, attempt)


RESTART_MIN_GAIN = 0.01  # a first epoch that improves validation by less than 1% has not started to learn


# Version of the restart rule, part of every signature with restarts: files of an earlier rule are not reused.
# 2 (2026-11-29): a restart also draws fresh trajectories. Under rule 1 (same trajectories) MNIST seed 4 stayed
# stuck through four restarts, five fresh LSTMs in all: what kept it there was its trajectories, not its LSTM.
RESTART_RULE = 2


def same_result_with_restarts(saved: int, last_attempt: int, restarts: int) -> bool:
    """Whether a run allowed ``saved`` restarts that ended at attempt ``last_attempt`` has the result a run
    allowed ``restarts`` would have (same seed and settings otherwise), so its files can be reused.

    Attempts are seeded by (seed, attempt), never by the cap, so two caps differ only in whether a stuck attempt
    may restart. An attempt that ended below its cap learned (a stuck one would have restarted): every cap from
    that attempt on ends there too. One that ended at its cap may be stuck: only the same cap is known to agree.
    """
    return saved == restarts or last_attempt < saved and last_attempt <= restarts


def last_attempt(history: pd.DataFrame) -> int:
    """The attempt a meta-training curve ended with (0 for a curve written before restarts, which has no column)."""
    return int(history["attempt"].max()) if "attempt" in history else 0


def trajectory_seed(seed: int, attempt: int, epoch: int, index: int) -> int:
    """The seed of trajectory ``index`` of ``epoch``: a function of the meta-training seed, so a run resumes and
    repeats exactly; a restart (``attempt`` > 0) draws its own, attempt 0 those of a run without restarts."""
    if attempt == 0:
        return derive_seed("trajectory", seed, epoch, index)
    return derive_seed("restart trajectory", seed, attempt, epoch, index)


def is_stuck(score: float, reference: float) -> bool:
    """Whether a validation ``score`` after the first epoch is no real improvement on ``reference`` (the better
    of the untrained LSTM's score and the do-nothing score)."""
    return not score < (1 - RESTART_MIN_GAIN) * reference


def _seen(rows: list) -> int:
    """Trajectories seen so far, over every attempt (the x axis of a meta-training curve)."""
    return rows[-1]["trajectories"] if rows else 0


def search_meta_lr(family, lrs=(0.001, 0.003, 0.01, 0.03), **kwargs) -> tuple[float, pd.DataFrame]:
    """Meta-train once per meta-learning rate (same seed, same budget) and pick the best by validation.

    ``kwargs`` go to :func:`meta_train` (keep ``epochs`` small: this is a scouting run). Returns the
    chosen rate and a table (meta_lr, best_val_loss_sum, best_epoch).
    """
    if len(lrs) == 0:
        raise ValueError("lrs=() must contain at least one meta-learning rate")
    rows = []
    for lr in lrs:
        check_positive_float("meta_lr (in lrs)", lr)
        result = meta_train(family, meta_lr=lr, **kwargs)
        rows.append(dict(meta_lr=lr, best_val_loss_sum=float(result.history.val_loss_sum.min()),
                         best_epoch=result.best_epoch))
    table = pd.DataFrame(rows)
    return float(table.meta_lr[table.best_val_loss_sum.idxmin()]), table
