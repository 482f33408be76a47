"""What a chapter's notebook shows of its experiment's result: the figures and display tables, as one call each.

The experiments compute (``l2l_core.experiments``); this module presents what they return, so that the science does
not import the presentation."""
from __future__ import annotations

import pandas as pd

from l2l_core.book.plotting import plot_losses, plot_meta_training, plot_seed_strip, plot_tuning
from l2l_core.book.tables import tidy


def losses_figure(result, title: str | None = None):
    """Loss against step on the held-out tasks, one panel per setting (LSTM: all meta-training seeds)."""
    return plot_losses(result.frame, col="setting", title=title)


def summary_table(result):
    """``result.summary()`` with each metric as 'mean [lo, hi]' strings, for display."""
    table = result.summary()
    out = table[["setting", "optimizer", "lr"]].copy()
    out["lr"] = out["lr"].map(lambda v: "meta-trained" if pd.isna(v) else f"{v:g}")
    for metric in [c for c in table.columns if f"{c} lo" in table.columns]:
        out[metric] = [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for m, lo, hi in
                       zip(table[metric], table[f"{metric} lo"], table[f"{metric} hi"])]
    out["diverged runs"] = table["diverged"] if "diverged" in table else 0
    return tidy(out)


def training_figure(result):
    """Meta-training curves: validation summed loss against trajectories seen, one line per seed."""
    return plot_meta_training(result.history)


def tuning_figure(result):
    """Each baseline's learning-rate grid on the validation tasks, the chosen rate circled."""
    return plot_tuning(result.tuning)


def seeds_figure(result, metric: str = "sum@100"):
    """Each meta-training seed's LSTM (points) against the tuned baselines (lines) on ``metric``."""
    return plot_seed_strip(result.frame, metric if result.settings.steps >= 100 else f"sum@{result.settings.steps}")


def defect_figure(result, defect: str):
    """One errata defect's arms: loss against step, one panel per arm and setting."""
    from l2l_core.experiments.errata import DEFECTS

    return plot_losses(result.frames[defect], col="panel", title=f"({defect}) {DEFECTS[defect]}", wrap=4)


def horizon_figures(result, every: int = 5):
    """Loss against steps and against wall-clock seconds (every ``every``-th step drawn)."""
    thin = result.frame[result.frame.step % every == 0]
    cost = result.costs.set_index(["setting", "optimizer"])["seconds_per_step"]
    timed = thin.assign(seconds=thin.step * cost.loc[list(zip(thin.setting, thin.optimizer))].to_numpy())
    return (plot_losses(thin, col="setting", wrap=2, title="loss against optimizee steps"),
            plot_losses(timed, col="setting", wrap=2, x="seconds", xlabel="wall-clock seconds (one task)",
                        title="loss against wall-clock time, per-step cost measured in this run"))


def provenance_table(name: str = "mnist"):
    """Each shipped seed of ``name``: its selection score and its held-out summed loss beside the tuned baselines'."""
    from l2l_core.optimizers.pretrained import provenance

    info = provenance(name)
    rows = [{"meta-training seed": int(k) if k != str(info["default_seed"]) else f"{k} (default)",
             "trajectories": info["trajectories"], "validation summed loss (selection)": v["validation_summed_loss"],
             "held-out summed loss, 100 steps": v["held_out_summed_loss_100_steps"]} for k, v in info["seeds"].items()]
    rows += [{"meta-training seed": f"{b} (tuned)", "held-out summed loss, 100 steps": value}
             for b, value in info["held_out_baselines_summed_loss_100_steps"].items()]
    return tidy(pd.DataFrame(rows))


def known_limits(results_root, experiments=("03 architectures", "04 ReLU", "05 MNIST-like", "06 CIFAR-10 / SVHN")):
    """The book's verdicts on the MNIST-trained LSTM away from its training family (one row per claim)."""
    from l2l_core.book.pages import collect_claims

    claims = collect_claims(results_root)
    claims = claims[claims.experiment.isin(experiments)]
    from l2l_core.book.pages import percent_ci, verdict_text

    return tidy(pd.DataFrame({
        "setting": claims["setting"], "claim": claims["claim"],
        "distance, % [95% CI]": [percent_ci(*v) for v in claims[["distance", "distance_lo", "distance_hi"]]
                                 .itertuples(index=False)],
        "verdict": [verdict_text(v, n) for v, n in zip(claims["verdict"], claims["near_threshold"])]}))
