"""tools/verdict_checks.py on synthetic run folders written as a run writes them (a chapter's settings.json and
losses.parquet), each check made to pass and to fail; and the disjoint-seed resampling it rests on (stability)."""
import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from l2l_core.evaluation.claims import NEAR, Claim, Part, check_claims, claim_data, holm_verdicts
from l2l_core.evaluation.stability import (claims_table, disjoint_agreement, disjoint_pairs, pool_runs,
                                           pool_tables, resampled_agreement, seed_pools, split_agreement, verdicts)
from l2l_core.experiments.settings import settings
from l2l_core.experiments.verdicts import run_claim_data
from l2l_core.io import write_frame, write_json
from test_claims import frame_from  # tests/ is on sys.path (rootdir conftest, no package)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import verdict_checks  # noqa: E402  (tools/ is not a package)

QUAD = "01_quadratic"
MNIST, CONTRAST = "MNIST 784-20-10 sigmoid", "MNIST 784-20-10 sigmoid (pytorch init)"


def lstm_table(offsets, level, rng, noise=0.003, twin_of=None):
    """LSTM values per (seed, task): each seed's relative offset from Adam (the task level) plus noise; ``twin_of``: a
    rounding twin of that table (the same seeds' LSTMs, moved a little)."""
    if twin_of is not None:
        return twin_of * (1 + 0.002 * rng.standard_normal(twin_of.shape))
    offsets = np.asarray(offsets, dtype=np.float64)[:, None]
    return level * (1 + offsets) + noise * rng.standard_normal((len(offsets), len(level)))


def write_run(root: Path, quadratic, mnist=None, n_tasks=12, seed=0, twin_of=None) -> Path:
    """A results folder as a run writes it: 01_quadratic (and 02_mnist when ``mnist`` maps its settings to seed
    offsets) with settings.json and losses.parquet (steps 0-2, so the claims' sum@100 is capped to sum@2). Baselines:
    Adam at each task's level, SGD 30% above. ``twin_of``: the results folder this run is the rounding twin of."""
    rng = np.random.default_rng(seed)
    level = np.random.default_rng(99).uniform(0.8, 1.2, n_tasks)
    chapters = {QUAD: ("quadratic", {"quadratic 10-d (thesis)": quadratic})}
    if mnist is not None:
        chapters["02_mnist"] = ("mlp", mnist)
    for name, (kind, per_setting) in chapters.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        n_seeds = max(len(v) for v in per_setting.values())
        s = settings(name, kind, "smoke", meta_seeds=tuple(range(n_seeds)), steps=2, n_tasks=n_tasks,
                     results_dir=str(folder))
        write_json(s.to_dict(), folder / "settings.json")
        frames = []
        for setting, offsets in per_setting.items():
            twin = None
            if twin_of is not None:
                old = pd.read_parquet(twin_of / name / "losses.parquet")
                old = old[(old.setting == setting) & (old.optimizer == "LSTM") & (old.step == 0)]
                twin = old.pivot(index="meta_seed", columns="task", values="loss").to_numpy()
            lstm = lstm_table(offsets, level, rng, twin_of=twin)
            frames.append(frame_from(lstm, {"Adam": level, "SGD": 1.3 * level}).assign(setting=setting))
        write_frame(pd.concat(frames, ignore_index=True).drop(columns="final_accuracy"), folder / "losses.parquet")
    return root


def run_tool(*args, cli=False) -> tuple[int, dict, pd.DataFrame, str]:
    """The tool on ``args`` (in this process; ``cli``: as a command): exit code, its JSON, its CSV, what it printed."""
    out = Path(args[0]).parent / "checks"
    argv = [*map(str, args), "--out", str(out)]
    if cli:
        proc = subprocess.run([sys.executable, "tools/verdict_checks.py", *argv], cwd=REPO, capture_output=True,
                              text=True)
        assert proc.returncode in (0, 1), proc.stderr
        code, printed = proc.returncode, proc.stdout
    else:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = verdict_checks.main(argv)
        printed = buffer.getvalue()
    return (code, json.loads((out / "verdict_checks.json").read_text()), pd.read_csv(out / "verdict_checks.csv"),
            printed)


def test_a_clear_run_passes_every_check(tmp_path):
    results = write_run(tmp_path / "results", [-0.3, -0.31, -0.29, -0.3, -0.32, -0.28])
    code, summary, table, printed = run_tool(results, cli=True)  # once as the command line runs it
    assert code == 0 and summary["passed"] and all(summary[k]["passed"] for k in "ABC")
    assert list(table["verdict_holm"]) == ["holds", "holds"]  # beats every baseline, by more than 10%
    assert (table["opposite"] == 0).all() and (table["check_b"] == "repeats").all() and table["check_c"].isna().all()
    assert summary["A"]["exhaustive"] and summary["A"]["pairs"] == math.comb(6, 3) // 2  # every pair of halves
    assert "(A) passed" in printed and "(B) passed" in printed and "(C) passed" in printed


def test_check_a_fails_where_disjoint_halves_give_opposite_verdicts(tmp_path):
    # three seeds far ahead of Adam, three far behind (stuck): the two halves that split them so decide opposite ways,
    # 1 of the 10 pairs of halves, above 5%
    results = write_run(tmp_path / "results", [-0.3, -0.3, -0.3, 0.3, 0.3, 0.3])
    code, summary, table, printed = run_tool(results, cli=True)  # a failed check: exit code 1
    assert code == 1 and summary["A"]["passed"] is False and "(A) FAILED" in printed
    assert list(table["opposite"]) == [0.1, 0.1]  # "beats" and "by a wide margin" alike
    assert [f["claim"] for f in summary["A"]["failing"]] == list(table["claim"])
    code, summary, _, _ = run_tool(results, "--opposite-limit", "0.15")  # a limit above 10%: it passes
    assert summary["A"]["passed"]


def test_check_b_flags_the_compute_cap_and_fails_a_run_smaller_than_the_rule_within_it(tmp_path):
    # 6% better than Adam with a wide spread of seeds: four seeds cannot repeat "holds" 90% of the time
    results = write_run(tmp_path / "results", [0.0, -0.12, -0.02, -0.1], n_tasks=12)
    code, summary, table, printed = run_tool(results)
    beats = table[table.claim.str.startswith("The LSTM beats")].iloc[0]
    assert abs(beats["distance"]) >= NEAR and beats["p_decided"] < 0.9 and beats["seeds_needed"] > 4
    assert beats["check_b"] == verdict_checks.LIMITED and summary["B"]["passed"]  # the run is the cap
    assert verdict_checks.LIMITED in printed and f"asks for {beats['seeds_needed']:.0f} seeds" in printed
    # the cap allows what the rule asks, the run had fewer: it fails
    code, summary, table, printed = run_tool(results, "--seed-cap", "1000")
    beats = table[table.claim.str.startswith("The LSTM beats")].iloc[0]
    assert code == 1 and beats["check_b"] == "fails" and not summary["B"]["passed"] and "(B) FAILED" in printed
    assert summary["B"]["failing"][0]["seeds_needed"] == beats["seeds_needed"] <= 1000


def test_check_c_prints_a_near_claim_with_its_r_and_fails_an_unmarked_one(tmp_path):
    results = write_run(tmp_path / "results", [-0.005, 0.0, -0.01, 0.005, -0.004, 0.002])  # a tie with Adam
    code, summary, table, _ = run_tool(results)
    beats = table[table.claim.str.startswith("The LSTM beats")].iloc[0]
    assert abs(beats["distance"]) < NEAR and beats["near_threshold"] and np.isfinite(beats["R"])
    assert beats["check_c"] == f"near threshold, R = {beats['R']:.2f}" and summary["C"]["passed"]
    assert summary["C"]["near_claims"] == 1 and math.isnan(beats["seeds_needed"])  # no seed count for it
    # a table whose near claim is not marked (or lacks its R) fails (C)
    data = verdict_checks.run_claim_data(results)
    full = verdict_checks.claims_with_repeatability(data)
    for broken in (full.assign(near_threshold=False), full.assign(R=np.nan)):
        result, status = verdict_checks.check_c(broken)
        assert not result["passed"] and status[0] == "fails"
    assert verdict_checks.check_c(full.assign(near_threshold=True))[0]["passed"] is False  # a far claim marked near


def test_rounding_twins_count_as_one_seed_and_contrasts_are_their_own_pool(tmp_path):
    offsets = {MNIST: [-0.3, -0.28, -0.31, -0.3], CONTRAST: [-0.2, -0.21]}  # the contrast ran on the first two seeds
    first = write_run(tmp_path / "a" / "results", [-0.3, -0.3, -0.29, -0.31], mnist=offsets)
    second = write_run(tmp_path / "b" / "results", [-0.3, -0.3, -0.29, -0.31], mnist=offsets, seed=1, twin_of=first)
    tables = [claims_table(verdict_checks.run_claim_data(p)) for p in (first, second)]
    pooled = pool_tables([[t] for t in tables])
    pools = seed_pools(pooled)
    assert sorted(len(rows) for rows in pools.values()) == [2, 4]  # distinct seeds: twins are one seed
    assert all(len(versions) == 2 for rows in pools.values() for versions in rows.values())
    pairs, exhaustive = disjoint_pairs(pooled, draws=200, seed=3)
    assert not exhaustive and len(pairs) == 200  # two pools: drawn
    for a, b in pairs:
        for key, rows in pools.items():
            seed_of = {r: s for s, versions in rows.items() for r in versions}
            seeds_a, seeds_b = [seed_of[r] for r in a[key]], [seed_of[r] for r in b[key]]
            assert len(set(seeds_a)) == len(seeds_a) == len(rows) // 2 == len(seeds_b)  # no twins inside a run
            assert not set(seeds_a) & set(seeds_b)  # two runs never share a seed
    code, summary, table, _ = run_tool(first, second, "--draws", "40")
    assert code == 0 and summary["distinct_seeds"] == {"0, 1": 2, "0, 1, 2, 3": 4}
    assert list(table["n_seeds"]) == [4, 4, 4, 4, 2, 2]  # (B) and (C) are about the first run: no twins in them
    # the contrast's halves would be one seed each, decided with no seed term: (A) leaves it out
    assert table["opposite"].isna().tolist() == [False] * 4 + [True] * 2 and summary["A"]["checked"] == 4


def _frames_and_claims():
    level = np.random.default_rng(3).uniform(0.8, 1.2, 10)
    rng = np.random.default_rng(4)
    claims = [Claim("x", "marginal", "t", "s", [Part("better")], metric="loss@2", setting="marginal"),
              Claim("x", "contrast", "t", "s", [Part("better")], metric="loss@2", setting="contrast", family="contrast")]
    frames = []
    for claim, offsets in zip(claims, ([-0.03, -0.01, -0.04, -0.02], [0.05, 0.06, 0.04, 0.05])):
        lstm = lstm_table(offsets, level, rng, noise=0.01)
        frames.append(frame_from(lstm, {"Adam": level}).assign(setting=claim.setting))
    return pd.concat(frames, ignore_index=True), claims


def test_a_table_is_decided_with_holm_within_each_family():
    frame, claims = _frames_and_claims()
    table = claims_table([claim_data(frame, c) for c in claims])
    book = holm_verdicts(check_claims(frame, claims))  # the book: Holm within each family
    assert table.verdicts([0, 1, 2, 3]) == list(book["verdict_holm"])
    together = holm_verdicts(check_claims(frame, claims).assign(family="thesis"))["verdict_holm"]
    # the family matters here: the marginal claim (p about 0.02) holds in its own family, not in one family of two
    assert list(book["verdict_holm"]) == ["holds", "does not hold"] and together[0] == "inconclusive"


def test_halves_are_every_pair_of_disjoint_seed_sets_and_agree_with_row_lists():
    frame, claims = _frames_and_claims()
    data = [claim_data(frame, c) for c in claims]
    tables = [claims_table(data)]
    pairs, exhaustive = disjoint_pairs(tables)
    assert exhaustive and len(pairs) == math.comb(4, 2) // 2
    key = data[0].meta_seeds
    assert sorted((tuple(a[key]), tuple(b[key])) for a, b in pairs) == [((0, 1), (2, 3)), ((0, 2), (1, 3)),
                                                                          ((0, 3), (1, 2))]
    table = split_agreement(tables)
    assert "all agree" not in table.attrs and table.attrs["pairs"] == 3 and table.attrs["exhaustive"]
    decided = [(verdicts(tables, list(a[key])), verdicts(tables, list(b[key]))) for a, b in pairs]
    assert [(verdicts(tables, a), verdicts(tables, b)) for a, b in pairs] == decided  # a dict of pools: the same rows
    for k in range(2):
        assert table["agree (halves of 2)"][k] == np.mean([va[k] == vb[k] for va, vb in decided])
        assert table["opposite (halves of 2)"][k] == np.mean([{va[k], vb[k]} == {"holds", "does not hold"}
                                                              for va, vb in decided])
    one = resampled_agreement(tables, 1, draws=6, seed=1)
    assert one.attrs["pairs"] == 4 * 3 // 2 and one.attrs["exhaustive"]  # 6 pairs of one seed each, all of them
    drawn = resampled_agreement(tables, 1, draws=5, seed=1)  # more pairs than draws: drawn, reproducibly
    assert drawn.attrs["pairs"] == 5 and not drawn.attrs["exhaustive"]
    pd.testing.assert_frame_equal(drawn, resampled_agreement(tables, 1, draws=5, seed=1))
    with pytest.raises(ValueError, match="need at least 6"):
        disjoint_agreement(tables, 3)
    pooled = pool_runs([data, data])  # the same run twice: each seed has two (equal) versions
    assert pooled[0].meta_seeds == (0, 1, 2, 3, 0, 1, 2, 3)
    pairs, exhaustive = disjoint_pairs([claims_table(pooled)], draws=1000)
    assert exhaustive and len(pairs) == 3 * 2 ** 4  # each pair of halves, each seed by either version


STORED = REPO / "reference" / "tables"  # the reference run's stored result tables (make store-evaluation)


@pytest.mark.skipif(not any(STORED.glob("*/losses.parquet")),
                    reason="the reference run's tables are not stored yet (make reproduce, then make store-evaluation)")
def test_the_stored_reference_run_passes_the_three_checks(tmp_path):
    # issue 33's done-when on the book's own evidence: the tables are read as stored, so the result is the same on
    # every CPU (only the stored numbers enter)
    out = tmp_path / "checks"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = verdict_checks.main([str(STORED), "--out", str(out)])
    summary = json.loads((out / "verdict_checks.json").read_text())
    table = pd.read_csv(out / "verdict_checks.csv")
    assert code == 0 and summary["passed"], printed.getvalue()
    assert summary["A"]["passed"] and (table["opposite"].dropna() <= 0.05).all()
    far = ~table["near_threshold"].astype(bool)
    assert set(table.loc[far, "check_b"]) <= {"repeats", verdict_checks.LIMITED}
    assert table.loc[~far, "R"].notna().all()  # every near claim is printed with its repeatability
    assert len(table) == len(run_claim_data(STORED))  # every claim the stored chapters state is checked


SEED_RULE = REPO / "reference" / "seed_rule"  # the first five reference seeds' evaluation that sized the main arm


def test_the_stored_seed_rule_evaluation_repeats_and_asks_for_more_than_five_seeds(tmp_path):
    # the main arm's ten seeds were chosen from this stored evaluation of seeds 0-4 (chapters 02-06): rerun on the
    # stored tables, the checks give the stored table again and pass, and the rule asks for more than five seeds
    out = tmp_path / "checks"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = verdict_checks.main([str(SEED_RULE / "tables"), "--seed-cap", "10", "--out", str(out)])
    assert code == 0, printed.getvalue()
    new, stored = (pd.read_csv(p / "verdict_checks.csv") for p in (out, SEED_RULE / "checks"))
    # float64 statistics of the same stored numbers: only the order of numpy's reductions can differ between CPUs,
    # a relative error of a few hundred ulps (1e-13) on sums of 250 terms; 1e-9 leaves room for the normal quantiles
    pd.testing.assert_frame_equal(new, stored, check_exact=False, rtol=1e-9, atol=1e-12)
    assert len(stored) == len(run_claim_data(SEED_RULE / "tables")) == 10 and set(stored.n_seeds) == {5}
    assert stored.seeds_needed.max() > 10  # the cap of ten binds for at least one claim
    limited = stored.check_b == verdict_checks.LIMITED
    assert limited.any() and (stored.seeds_needed[limited] > 10).all()
