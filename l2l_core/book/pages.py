"""Bookkeeping a chapter page needs and a reader need not see: the profile note, glued numbers, data sources,
the long-run figure, and the book's claim table."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from l2l_core.book.tables import tidy
from l2l_core.evaluation.claims import short_number
from l2l_core.experiments.protocol import ExperimentResult
from l2l_core.experiments.settings import REPO_ROOT, TRAINING, Settings, mlp_family

LONG_RUN_DIR = REPO_ROOT / "book" / "data" / "long_run"
STUCK_RATE_DIR = REPO_ROOT / "book" / "data" / "stuck_rate"


def stuck_rate_note(s: Settings, folder: str | Path = STUCK_RATE_DIR):
    """What tools/stuck_rate.py measured: how often a first epoch of meta-training is stuck on each stored MLP family,
    with an exact 95% interval, and what that rate means for a seed with ``s.restarts`` restarts; None if nothing
    is stored."""
    import json

    from IPython.display import Markdown

    from l2l_core.evaluation.stats import binomial_ci

    lines = []
    for path in sorted(Path(folder).glob("stuck-*.csv")):
        table = pd.read_csv(path)
        provenance = path.with_name(path.name.replace("stuck-", "provenance-", 1).replace(".csv", ".json"))
        if not provenance.is_file():  # an interrupted measurement: its rows stand, its settings are not recorded
            lines.append(f"- `{path.name}`: no provenance file beside it; run `python tools/stuck_rate.py` to finish it.")
            continue
        meta = json.loads(provenance.read_text())
        k, n = int(table["stuck"].sum()), len(table)
        lo, hi = binomial_ci(k, n)
        attempts = s.restarts + 1
        seeds = table["meta_seed"]
        lines.append(
            f"- `{meta['family']}`: **{k} of {n}** first epochs stuck (meta-training seeds {seeds.min()}-{seeds.max()}, "
            f"profile `{meta['profile']}`: {meta['trajectories_per_epoch']} trajectories, {meta['n_val_tasks']} "
            f"validation tasks), a rate of {k / n:.2f} (95% CI [{lo:.2f}, {hi:.2f}], Clopper-Pearson). If attempts "
            f"were independent draws at that rate, all {attempts} attempts of one seed would be stuck with probability "
            f"{(k / n) ** attempts:.2g} (at most {hi ** attempts:.2g} within the interval). Measured on "
            f"{meta['machine'].get('CPU', 'an unnamed CPU')} at commit {meta['code_commit'][:7]}.")
    return Markdown("\n".join(lines)) if lines else None


def long_run_figure(s: Settings, folder: str | Path = LONG_RUN_DIR):
    """The meta-training curves measured at the thesis' budget (tools/long_meta_training.py), with this profile's
    budget marked; None when no such measurement is stored."""
    from l2l_core.book.plotting import plot_meta_training

    files = sorted(Path(folder).glob("history-*.csv"))
    if not files:
        return None
    parts = [f.stem.removeprefix("history-").rsplit("-seed", 1) for f in files]
    history = pd.concat([pd.read_csv(f).assign(setting=family, meta_seed=int(seed))
                         for f, (family, seed) in zip(files, parts)], ignore_index=True)
    fig = plot_meta_training(history)
    for ax, setting in zip(fig.axes, dict.fromkeys(history["setting"])):
        kind = "quadratic" if setting.startswith("quadratic") else "mlp"
        budget = TRAINING[kind][s.profile]
        ax.axvline(budget["meta_epochs"] * budget["trajectories_per_epoch"], color="k", ls="--", lw=1)
    return fig


def split_facts(result: ExperimentResult):
    """How many images each setting's splits hold (the tuning split feeds minibatches from half of it) and how
    balanced the evaluation split is: the share of its images in the rarest quarter of the classes (25% if even)."""
    from l2l_core.tasks.data import meta_split_indices

    rows = []
    for label in result.sources:
        dataset = next(v for k, v in {"MNIST": "mnist", "Fashion-MNIST": "fashion_mnist", "EMNIST Letters":
                                      "emnist_letters", "CIFAR-10": "cifar10", "SVHN": "svhn"}.items()
                       if label.startswith(k + " "))
        data = mlp_family(result.settings, dataset=dataset).data
        splits = meta_split_indices(data)
        part, test_rows = splits["test"]
        counts = torch.bincount(data.y_test[test_rows], minlength=data.n_classes).sort().values
        rare = counts[: max(1, data.n_classes // 4)].sum().item() / counts.sum().item()
        rows.append({"setting": label, "meta-train images": len(splits["meta_train"][1]),
                     "tuning (meta-val) images": len(splits["meta_val"][1]),
                     "tuning images feeding minibatches": len(splits["meta_val"][1]) // 2,
                     "evaluation images": len(test_rows),
                     "classes in evaluation": f"{int((counts > 0).sum())} of {data.n_classes}",
                     "share of evaluation images in the rarest quarter of classes": f"{100 * rare:.1f}%"})
    return tidy(pd.DataFrame(rows))


def data_sources(result: ExperimentResult):
    """Markdown listing which files each setting read, and which settings were not run and why."""
    from IPython.display import Markdown

    from l2l_core.tasks.data import resolve_data_root

    root = str(resolve_data_root(result.settings.data_root))  # the page names no folder of the machine that ran it
    lines = [f"- **{label}**: {source}" for label, source in result.sources.items()]
    lines += [f"- **{label}**: {reason}" for label, reason in result.skipped.items()]
    return Markdown("Data used:\n\n" + "\n".join(lines).replace(root, "<data root>"))


# ------------------------------------------------------------------ what notebooks display
def profile_note(s: Settings):
    """A one-line Markdown banner saying what this run's numbers can be trusted for."""
    from IPython.display import Markdown

    text = {
        "smoke": "**Profile `smoke`**: a seconds-long pipeline check. Its numbers mean nothing; run `full` for results.",
        "quick": "**Profile `quick`**: a first answer in minutes, with fewer seeds, tasks and meta-training than "
                 "`full`. It is not the book's evidence.",
        "full": "**Profile `full`**: the book's evidence, at the thesis' meta-training budgets (see the method page).",
    }[s.profile]
    plural = lambda k, word: f"{k} {word}{'' if k == 1 else 's'}"
    return Markdown(f"{text} Evaluation: {plural(len(s.seeds) * s.n_tasks, 'held-out task')} per optimizer "
                    f"({plural(len(s.seeds), 'task seed')}), {s.steps} steps; meta-training: "
                    f"{plural(len(s.meta_seeds), 'LSTM')} (one per meta-training seed), each {s.meta_epochs} epochs x "
                    f"{s.trajectories_per_epoch} trajectories of {s.train_steps} steps (unroll {s.unroll}).")


def percent_ci(mean, lo, hi) -> str:
    """A signed distance and its interval in percent of the baseline's mean (the column names the unit), on one line;
    '' where not tested."""
    nbsp = "\u00a0"
    if pd.isna(mean):
        return ""
    return f"{100 * mean:+.1f}{nbsp}[{100 * lo:+.1f},{nbsp}{100 * hi:+.1f}]"


def seed_strip(per_seed: str) -> str:
    """Each meta-training seed's distance to the threshold, in percent, sorted: the spread a verdict rests on."""
    import json

    values = json.loads(per_seed) if isinstance(per_seed, str) and per_seed else []
    return " ".join(f"{100 * v:+.0f}" for v in sorted(values))


def r_text(r, lo, hi) -> str:
    """A repeatability R with its range, on one line; '' where it was not estimated."""
    return "" if pd.isna(r) else f"{r:.2f}\u00a0[{lo:.2f},\u00a0{hi:.2f}]"


def seeds_needed_text(n, tasks=None, capped=False, cap: int | None = None) -> str:
    """The seeds the seed rule asks for, with the task count where seeds alone cannot do it, and whether the compute
    cap binds (naming the cap where it is given); '' where the rule gives none."""
    if pd.isna(n):
        return ""
    binds = (f" (above the cap of {cap})" if cap is not None else " (capped)") if capped else ""
    return f"{int(n)}" + (f" ({int(tasks)} tasks)" if tasks and tasks > 0 else "") + binds


def verdict_text(verdict: str, near: bool) -> str:
    """The verdict, with *near threshold* beside it where the claim's distance is under ``claims.NEAR``."""
    return f"{verdict} (near threshold)" if near is True or near == "True" else verdict


def claims_view(claims: pd.DataFrame, sources: bool = True, lstm: str | None = None) -> pd.DataFrame:
    """The claims table as a reader sees it: each claim's signed distance to its threshold (percent of the binding
    baseline's mean; positive on the side the claim states) with its crossed 95% interval and its re-run (seed-
    cluster) interval, each named baseline's effect, the per-seed estimates, the LSTM's value, diverged runs and the
    verdict (with near threshold). ``lstm`` names the LSTMs the verdicts are about (budget, seeds). The thesis'
    wording and source show unless ``sources`` is False. A claim that was not run says why in its test column."""
    nbsp = "\u00a0"

    def ci(mean, lo, hi):
        return "" if pd.isna(mean) else f"{short_number(mean)}{nbsp}[{short_number(lo)},{nbsp}{short_number(hi)}]"

    tested = claims["lstm"].notna()
    near = claims["near_threshold"] if "near_threshold" in claims else [False] * len(claims)
    view = pd.DataFrame({
        "experiment": claims["experiment"], "setting": claims["setting"].fillna(""), "claim": claims["claim"],
        **({"thesis": claims["thesis"], "source": claims["source"]} if sources else {}),
        "test": [test if t else f"{test} ({why})" for t, test, why in zip(tested, claims["test"], claims["ours"])],
        "distance, % [95% CI]": [percent_ci(*v) + (f"{nbsp}vs{nbsp}{b}" if t else "") for t, b, v in zip(
            tested, claims["binding"], claims[["distance", "distance_lo", "distance_hi"]].itertuples(index=False))],
        "re-run interval, %": [percent_ci(*v) for v in
                               claims[["distance", "seed_lo", "seed_hi"]].itertuples(index=False)],
        "per baseline": claims["per_baseline"].fillna(""),
        "per seed, %": [seed_strip(x) for x in claims["per_seed"]],
        "LSTM": [ci(*v) for v in claims[["lstm", "lstm_lo", "lstm_hi"]].itertuples(index=False)],
        "diverged runs": [str(int(d)) if t else "" for t, d in zip(tested, claims["diverged_runs"])],
        "verdict": [verdict_text(v, n) for v, n in zip(claims["verdict"], near)],
    })
    if lstm is not None:
        view.insert(len(view.columns) - 1, "about", [lstm if t else "" for t in tested])
    return view


CLAIM_WIDTHS = {"setting": 8, "claim": 14, "thesis": 14, "test": 11}  # the prose columns of a claims table (em)


def lstm_text(s: Settings) -> str:
    """Which LSTMs a chapter's verdicts are about: meta-training budget and seeds."""
    return (f"{s.meta_epochs * s.trajectories_per_epoch:,} trajectories, "
            f"{len(s.meta_seeds)} seed{'' if len(s.meta_seeds) == 1 else 's'}")


def glue_result(result: ExperimentResult) -> None:
    """Glue the claims table and each verdict under '<name>.claims' and '<name>.verdict.<i>' for the book."""
    from myst_nb import glue

    name = result.settings.name
    glue(f"{name}.claims", tidy(claims_view(result.claims, lstm=lstm_text(result.settings)), widths=CLAIM_WIDTHS),
         display=False)
    for i, row in result.claims.iterrows():
        glue(f"{name}.verdict.{i}", row["verdict"], display=False)
        glue(f"{name}.ours.{i}", row["ours"], display=False)
    glue(f"{name}.minutes", f"{result.seconds / 60:.1f}", display=False)


def collect_claims(results_root: str | Path) -> pd.DataFrame:
    """Every experiment's claims.csv under ``results_root``, in experiment order."""
    files = sorted(Path(results_root).glob("*/claims.csv"))
    if not files:
        raise FileNotFoundError(f"results_root={str(results_root)!r} holds no */claims.csv; run the experiment notebooks first")
    table = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    text = table.select_dtypes(include=["object", "str"]).columns  # text columns under pandas 2 and 3
    table[text] = table[text].fillna("")
    return table
