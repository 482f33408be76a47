"""Shared figures: loss against step, mean with a 95% band, one curve per optimizer, LSTM solid."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from l2l_core.evaluation.evaluate import LSTM_LABEL

OPTIMIZER_ORDER = (LSTM_LABEL, "SGD", "RMSprop", "Adam", "NAG")
PALETTE = dict(zip(OPTIMIZER_ORDER, sns.color_palette("colorblind", len(OPTIMIZER_ORDER))))


def _order(names) -> list[str]:
    present = list(dict.fromkeys(names))
    return [n for n in OPTIMIZER_ORDER if n in present] + [n for n in present if n not in OPTIMIZER_ORDER]


def plot_losses(frame: pd.DataFrame, col: str | None = None, title: str | None = None, log: bool = True,
                x: str = "step", height: float = 3.6, wrap: int | None = None, xlabel: str | None = None):
    """Loss vs ``x`` (mean over seeds and tasks, 95% normal band); one panel per value of ``col``, at most
    ``wrap`` panels per row.

    Returns the matplotlib Figure. Learned optimizers (labels starting 'LSTM') are drawn solid, baselines
    dashed; diverged tasks are left out.
    """
    if "diverged" in frame:  # non-finite runs are counted in the tables, not drawn
        frame = frame[~frame["diverged"]]
    panels = list(dict.fromkeys(frame[col])) if col else [None]
    ncols = min(len(panels), wrap or len(panels))
    nrows = -(-len(panels) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(1.0 + 4.6 * ncols, height * nrows), squeeze=False,
                             constrained_layout=True)
    for ax in grid.flat[len(panels):]:
        ax.set_visible(False)
    axes = list(grid.flat)[:len(panels)]
    order = _order(frame["optimizer"])
    extra = [n for n in order if n not in PALETTE]
    palette = {**{n: PALETTE[n] for n in order if n in PALETTE},
               **dict(zip(extra, sns.color_palette("dark", len(extra))))}
    dashes = {name: "" if name.startswith(LSTM_LABEL) else (4, 2) for name in order}
    for ax, panel in zip(axes, panels):
        data = frame if panel is None else frame[frame[col] == panel]
        sns.lineplot(data=data, x=x, y="loss", hue="optimizer", style="optimizer", hue_order=order,
                     style_order=order, dashes=dashes, palette=palette, errorbar=("se", 1.96), ax=ax,
                     legend=ax is axes[-1])
        if log:
            ax.set_yscale("log")
        ax.set_title(panel if panel is not None else (title or ""))
        ax.set_xlabel(xlabel or ("optimizee step" if x == "step" else x))
        ax.set_ylabel("loss")
        ax.grid(True, which="major", alpha=0.3)
    legend = axes[-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title and col:
        fig.suptitle(title)
    return fig


def plot_meta_training(history: pd.DataFrame, col: str = "setting", height: float = 3.4):
    """Meta-training curves: validation summed loss (steps 0..T-1, mean over the validation tasks) against
    trajectories seen, one line per meta-training seed, one panel per ``col`` value; the selected (best) point
    of each seed is marked. An attempt abandoned as stuck (``meta_train(restarts=...)``) is dotted, ending in x."""
    panels = list(dict.fromkeys(history[col])) if col in history else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + 4.6 * len(panels), height), squeeze=False,
                             constrained_layout=True)
    colors = sns.color_palette("colorblind", max(1, history["meta_seed"].nunique()))
    for ax, panel in zip(axes.flat, panels):
        data = history if panel is None else history[history[col] == panel]
        for color, (seed, run) in zip(colors, data.groupby("meta_seed", sort=True)):
            attempts = run["attempt"].fillna(0) if "attempt" in run else pd.Series(0, index=run.index)
            for attempt, part in run.groupby(attempts, sort=True):
                part = part.sort_values("trajectories")
                if attempt < attempts.max():
                    ax.plot(part["trajectories"], part["val_loss_sum"], ":", color=color, lw=1.0)
                    ax.plot(part["trajectories"].iloc[-1], part["val_loss_sum"].iloc[-1], "x", color=color, ms=5)
            run = run[attempts == attempts.max()].sort_values("trajectories")
            ax.plot(run["trajectories"], run["val_loss_sum"], color=color, lw=1.2, label=f"seed {seed}")
            best = run.loc[run["val_loss_sum"].idxmin()]
            ax.plot(best["trajectories"], best["val_loss_sum"], "o", color=color, ms=5)
        ax.set_yscale("log")
        ax.set_xlabel("meta-training trajectories seen")
        ax.set_ylabel("validation summed loss")
        ax.set_title(panel or "")
        ax.grid(True, which="major", alpha=0.3)
    axes.flat[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="meta-seed")
    return fig


def plot_seed_strip(frame: pd.DataFrame, metric: str = "sum@100", col: str = "setting", height: float = 3.2):
    """Each meta-training seed's LSTM (one point: its mean ``metric`` over the held-out tasks) beside the tuned
    baselines (a horizontal mark each), one panel per ``col`` value. Diverged runs are left out here."""
    from l2l_core.evaluation.claims import per_task_metric

    panels = list(dict.fromkeys(frame[col])) if col in frame else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + 3.8 * len(panels), height), squeeze=False,
                             constrained_layout=True)
    for ax, panel in zip(axes.flat, panels):
        data = frame if panel is None else frame[frame[col] == panel]
        values = per_task_metric(data, metric)  # one row per (optimizer, meta_seed, seed, task)
        means = values.groupby(["optimizer", "meta_seed"], sort=False)["value"].mean().reset_index()
        order = _order(means["optimizer"])
        for x, name in enumerate(order):
            rows = means[means.optimizer == name]
            color = PALETTE.get(name, "grey")
            if name.startswith(LSTM_LABEL):
                ax.plot([x] * len(rows), rows["value"], "o", color=color, alpha=0.8)
            else:
                ax.plot([x - 0.3, x + 0.3], [rows["value"].mean()] * 2, "-", color=color, lw=3)
        ax.set_xticks(range(len(order)), order)
        ax.set_ylabel(metric.replace("sum@", "loss summed over steps 0-").replace("loss@", "loss at step "))
        ax.set_title(panel or "")
        ax.grid(True, axis="y", alpha=0.3)
    return fig


VERDICT_COLORS = {"holds": "#1b9e77", "does not hold": "#d95f02", "inconclusive": "#7f7f7f", "not run": "#cccccc"}


def claim_label(row, width: int = 34) -> str:
    """A claim's short label for a figure: its setting (or chapter) and the test, cut to ``width`` characters."""
    text = f"{row['setting']}: {row['test']}" if row["setting"] else str(row["test"])
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def plot_claims_forest(claims: pd.DataFrame, verdict: str = "verdict_holm"):
    """Every tested claim in one figure, grouped by chapter: its signed distance to its threshold (percent of the
    binding baseline's mean; > 0 on the side the claim states, so the threshold is 0 for every claim) with the
    crossed 95% interval (thick) and the Holm-adjusted one (thin, where present), the near-threshold band
    (+-``claims.NEAR``) shaded, coloured by ``verdict``. The axis is fitted to the intervals."""
    from l2l_core.evaluation.claims import NEAR

    rows = claims[claims["distance"].notna()].reset_index(drop=True)
    lo_col, hi_col = ("adjusted_lo", "adjusted_hi") if "adjusted_lo" in rows else ("distance_lo", "distance_hi")
    ys, labels, y, previous = [], [], 0, None
    for _, row in rows.iterrows():
        if row["experiment"] != previous:  # a chapter heading row
            if previous is not None:
                y += 0.6
            labels.append((y, row["experiment"], True))
            y += 1
            previous = row["experiment"]
        ys.append(y)
        labels.append((y, claim_label(row), False))
        y += 1
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.3 * y), constrained_layout=True)
    for y_, (_, row) in zip(ys, rows.iterrows()):
        color = VERDICT_COLORS.get(row[verdict], "black")
        ax.plot([100 * row[lo_col], 100 * row[hi_col]], [y_, y_], "-", color=color, lw=1)
        ax.plot([100 * row["distance_lo"], 100 * row["distance_hi"]], [y_, y_], "-", color=color, lw=3)
        ax.plot(100 * row["distance"], y_, "o", color=color)
    ends = 100 * pd.concat([rows[lo_col], rows[hi_col], rows["distance_lo"], rows["distance_hi"]]).dropna()
    lo, hi = (min(ends.min(), -100 * NEAR), max(ends.max(), 100 * NEAR)) if len(ends) else (-10, 10)
    pad = 0.05 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    ax.axvspan(-100 * NEAR, 100 * NEAR, color="#999999", alpha=0.15, lw=0, label="near threshold")
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks([y_ for y_, _, _ in labels], [text for _, text, _ in labels], fontsize=9)
    for tick, (_, _, heading) in zip(ax.get_yticklabels(), labels):
        tick.set_fontweight("bold" if heading else "normal")
    ax.set_ylim(y - 0.4, -0.6)
    ax.set_xlabel("distance to the claim's threshold, % of the baseline's mean (> 0: on the claim's side)\n"
                  "thick: 95% CI; thin: Holm-adjusted CI; shaded: near threshold")
    for name, color in VERDICT_COLORS.items():
        if name in set(rows[verdict]):
            ax.plot([], [], "o-", color=color, label=name)
    ax.legend(title="verdict (Holm)", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_tuning(tuning: pd.DataFrame, col: str = "setting", height: float = 3.2):
    """Each baseline's tuning grid: summed validation loss against learning rate (log axes), the chosen rate
    circled; one panel per ``col`` value. A rate that diverged is left out of its line."""
    panels = list(dict.fromkeys(tuning[col])) if col in tuning else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + 3.8 * len(panels), height), squeeze=False,
                             constrained_layout=True)
    for ax, panel in zip(axes.flat, panels):
        data = tuning if panel is None else tuning[tuning[col] == panel]
        for name in _order(data["optimizer"]):
            rows = data[data.optimizer == name].sort_values("lr")
            color = PALETTE.get(name, "grey")
            ax.plot(rows["lr"], rows["loss_sum"], "o-", color=color, label=name, ms=3)
            chosen = rows[rows["chosen"]]
            ax.plot(chosen["lr"], chosen["loss_sum"], "o", ms=10, mfc="none", color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation loss summed over steps")
        ax.set_title(panel or "")
        ax.grid(True, alpha=0.3)
    axes.flat[-1].legend(fontsize=8)
    return fig
