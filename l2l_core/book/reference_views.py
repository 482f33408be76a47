"""The reproduction page's sections on the reference run (``reference/``): its stored LSTMs, this run's tables beside
the stored ones, and the stored evaluation whose seed rule sized the main MNIST arm. Each ``*_view`` returns a
caption (Markdown) and a table, as in :mod:`l2l_core.book.reproduction`."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from l2l_core.book.pages import CLAIM_WIDTHS
from l2l_core.book.tables import markdown, tidy
from l2l_core.experiments.settings import REPO_ROOT

SEED_RULE_DIR = REPO_ROOT / "reference" / "seed_rule"  # seeds 0-4 evaluated before seeds 5-9 (reference/README)


def stored_tables_view(build_dir: str | Path, profile: str, reference: Path | None = None) -> list:
    """This run's result tables beside the reference run's stored ones (``reference_tables.check``): on the machine
    that stored them every table must be identical; elsewhere each table's largest relative difference and the
    verdicts that changed."""
    from l2l_core.experiments import reference_tables
    from l2l_core.experiments.settings import REFERENCE_PROFILE

    reference = Path(reference or reference_tables.REFERENCE_DIR)
    stored = reference / "tables" / "machine.json"
    if profile != REFERENCE_PROFILE:
        return [markdown(f"The stored tables are the `{REFERENCE_PROFILE}` profile's; this book was built from the "
                         f"`{profile}` profile, so there is nothing to compare with them.")]
    if not stored.is_file():
        return [markdown("No tables of the reference run are stored yet: `make store-evaluation` stores them from a "
                         "finished `make reproduce`.")]
    table, same = reference_tables.check(Path(build_dir) / "results", reference)
    made, counts = json.loads(stored.read_text()), reference_tables.summary(table)
    text = (f"Stored by {made.get('cpu')} (family/model {made.get('cpu_family_model')}, {made.get('instruction_sets')}), "
            f"torch {made.get('torch')}, {made.get('threads')} thread(s) per job, commit {str(made.get('commit'))[:12]}. "
            f"This run is {'on the same machine: every table must be identical' if same else 'on another machine'}. "
            f"{counts['identical']} of {counts['tables']} tables are identical; the largest relative difference is "
            f"{counts['largest']:.3g}; {counts['verdicts changed']} verdict(s) changed. Values of measured time "
            "(seconds, wall-clock budgets) are not compared.")
    return [markdown(text), tidy(table)]


def reference_run_table(lstms: str | Path | None = None) -> pd.DataFrame:
    """Every LSTM the reference run has stored (``reference/lstms/<chapter>/provenance-*.json``): its arm and seed,
    trajectories, attempts, best validation summed loss, the machine and commit that trained it, and the job's seconds:
    the sum of its epochs' times over every session that worked on it (its history; the provenance's are the last
    session's part only)."""
    from l2l_core.experiments.settings import REFERENCE_DIR

    rows = []
    for path in sorted(Path(lstms or REFERENCE_DIR / "lstms").glob("*/provenance-*.json")):
        facts = json.loads(path.read_text())
        history = path.with_name(path.name.replace("provenance-", "history-").replace(".json", ".csv"))
        trajectories, seconds = None, facts["seconds"]
        if history.is_file():  # the selected attempt's own budget (a restart's wasted epoch is counted before it)
            whole = pd.read_csv(history)
            seconds = float(whole.seconds.sum()) if "seconds" in whole else seconds
            curve = whole[whole.attempt == whole.attempt.max()] if "attempt" in whole else whole
            trajectories = int(curve.trajectories.max() - curve.trajectories.min())
        rows.append({"chapter": facts["chapter"], "LSTM": facts["name"], "seed": facts["meta_seed"],
                     "trajectories": trajectories, "attempts": facts["attempts"],
                     "best validation summed loss": facts["best_val_loss_sum"],
                     "CPU": f"{facts['cpu']} {facts['cpu_family_model']} ({facts['instruction_sets']})",
                     "threads": facts["threads"], "commit": facts["commit"][:7], "job seconds": round(seconds, 1)})
    return pd.DataFrame(rows)


def reference_run_view(lstms: str | Path | None = None) -> list:
    """The reference run's stored LSTMs with a caption that puts the main MNIST arm beside the thesis' selected LSTM."""
    from l2l_core.experiments.setups import THESIS_MNIST_LSTM

    table = reference_run_table(lstms)
    if table.empty:
        return [markdown("The reference run has stored no LSTM yet (`make reference`).")]
    main = table[(table.chapter == "02_mnist") & (table.LSTM == "lstm")]["best validation summed loss"]
    text = (f"{len(table)} LSTM{'s' if len(table) != 1 else ''} stored. " + (
        f"The main MNIST arm's {len(main)} seeds reach best validation summed losses of {main.min():.2f} to "
        f"{main.max():.2f}; the thesis' selected MNIST LSTM scored {THESIS_MNIST_LSTM}. " if len(main) else "")
        + "Job time by chapter: " + ", ".join(f"{chapter} {secs / 3600:.1f} h" for chapter, secs in
                                                       table.groupby("chapter")["job seconds"].sum().items())
        + " (each job's epochs summed over the sessions that ran it; two jobs side by side on two cores, beside "
          "whatever else ran: not timings).")
    return [markdown(text), tidy(table)]


def _stored_checks(folder: str | Path) -> pd.DataFrame | None:
    path = Path(folder) / "checks" / "verdict_checks.csv"
    return pd.read_csv(path) if path.is_file() else None


def _seed_rule_rows(checks: pd.DataFrame) -> pd.DataFrame:
    from l2l_core.book.pages import percent_ci, r_text, seeds_needed_text, verdict_text

    return pd.DataFrame({
        "chapter": checks["experiment"], "setting": checks["setting"], "claim": checks["claim"],
        "seeds": checks["n_seeds"],
        "verdict (Holm)": [verdict_text(v, n) for v, n in checks[["verdict_holm", "near_threshold"]]
                           .itertuples(index=False)],
        "distance, % [95% CI]": [percent_ci(*v) for v in checks[["distance", "distance_lo", "distance_hi"]]
                                 .itertuples(index=False)],
        "R [range]": [r_text(*v) for v in checks[["R", "R_lo", "R_hi"]].itertuples(index=False)],
        "seeds the rule asks": [seeds_needed_text(n, None, capped, cap) for n, cap, capped in
                                checks[["seeds_needed", "seed_cap", "capped"]].itertuples(index=False)]})


def seed_rule_table(folder: str | Path = SEED_RULE_DIR) -> pd.DataFrame | None:
    """The stored evaluation that sized the main MNIST arm (``tools/verdict_checks.py`` on seeds 0-4, in
    ``<folder>/checks``) as the page shows it: per claim its verdict, distance, R and the seeds the rule asks for;
    None when none is stored."""
    checks = _stored_checks(folder)
    return None if checks is None else _seed_rule_rows(checks)


def seed_rule_view(folder: str | Path = SEED_RULE_DIR) -> list:
    """The seed-rule evaluation with a caption that counts, from the stored table, the claims that asked for more
    than its seeds and the ones the compute cap limits."""
    from l2l_core.evaluation.repeatability import TARGET

    checks = _stored_checks(folder)
    if checks is None:
        return [markdown("No seed-rule evaluation is stored.")]
    made = json.loads((Path(folder) / "tables" / "machine.json").read_text())
    seeds, cap = int(checks["n_seeds"].max()), int(checks["seed_cap"].max())
    more = checks[checks["seeds_needed"] > seeds]
    capped = checks[checks["capped"].astype(bool)]
    wide = checks[checks["R_lo"] < TARGET]
    text = (f"{len(checks)} claims, {seeds} seeds x {int(checks['n_tasks'].max())} tasks each "
            f"({made['cpu']} {made['cpu_family_model']}, {made['threads']} thread per job). "
            f"The rule asks for more than {seeds} seeds for {len(more)} of them, and for more than the cap of {cap} "
            f"for {len(capped)} ({'; '.join(f'{r.setting}: {r.seeds_needed:.0f}' for r in capped.itertuples())}); "
            f"{len(wide)} claims' R ranges reach below {TARGET} at {seeds} seeds. So the main arm was given the cap: "
            f"seeds {seeds} to {cap - 1} were trained after this table. How it was made: {made['how']}; commits: "
            + "; ".join(f"{chapters} {commit}" for chapters, commit in made["commits"].items()) + ".")
    return [markdown(text), tidy(_seed_rule_rows(checks), widths=CLAIM_WIDTHS)]
