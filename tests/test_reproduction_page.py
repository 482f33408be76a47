"""The reproduction page reads what is stored: every CPU's bench results, and only the stability measures that are
not pseudo-replicated."""
import json

import pandas as pd

from l2l_core.book import reference_views, reproduction


def test_the_page_finds_every_cpus_bench_results(tmp_path):
    for cpu, names in {"cpu-a": ["results.json", "results-avx2.json"], "cpu-b": ["results.json"], "cpu-c": []}.items():
        (tmp_path / cpu).mkdir()
        for name in names:
            (tmp_path / cpu / name).write_text(json.dumps({
                "machine": {"cpu": cpu, "instruction_sets": "avx2", "threads": 1, "cores": 2},
                "workloads": {"trajectory": {"median_s": 0.5}}, "peak_rss_mb": 100}))
    (tmp_path / "cpu-b" / "results.json").write_text(json.dumps({
        **json.loads((tmp_path / "cpu-b" / "results.json").read_text()),
        "scaling": {"machine": {"cpu": "cpu-b", "cores": 2, "instruction_sets": "avx2"}, "unit_costs_s": {},
                    "table": [{"profile": "full", "cores": 2, "minutes": 10.0}]}}))
    files = reproduction.bench_files(tmp_path)
    assert [f"{p.parent.name}/{p.name}" for p in files] == ["cpu-a/results.json", "cpu-a/results-avx2.json",
                                                            "cpu-b/results.json"]
    assert len(reproduction.bench_views(tmp_path)) == 2 * len(files)  # a caption and a table each
    assert len(reproduction.scaling_views(tmp_path)) == 2  # cpu-b only has the jobs part
    assert "cpu-a" in reproduction.bench_views(tmp_path)[0].data
    assert len(reproduction.bench_views(tmp_path / "cpu-c")) == 1  # says none is stored


def test_stability_measures_that_count_rounding_twins_as_seeds_are_not_shown(tmp_path):
    labels = ["part", "experiment", "setting", "claim", "variant"]
    table = pd.DataFrame([["claims", "01", "", "c", "", 1.0, 1.0, 0.6, 0.5, 0.7]],
                         columns=labels + ["agree (rounding pairs of 5)", "holds (rounding pairs of 5)",
                                           "agree (halves of 5)", "holds (halves of 5)",
                                           "agree (5 seeds, resampled)"])
    table.to_csv(tmp_path / "agreement.csv", index=False)
    info = {"note": "n", "verdicts": {"claims": 1}, "lstms_pooled": 10,
            "pairs": {"agree (rounding pairs of 5)": 16, "agree (halves of 5)": 126, "agree (5 seeds, resampled)": 500}}
    (tmp_path / "provenance.json").write_text(json.dumps(info))
    shown, shown_info = reproduction.verdict_stability(tmp_path)
    assert [c for c in shown.columns if c not in labels] == ["agree (rounding pairs of 5)", "holds (rounding pairs of 5)"]
    assert shown_info["pairs"] == {"agree (rounding pairs of 5)": 16}
    (tmp_path / "provenance.json").write_text(json.dumps({**info, "seed_sets": "disjoint"}))  # halves on disjoint seeds
    shown, _ = reproduction.verdict_stability(tmp_path)
    assert "agree (halves of 5)" in shown.columns and "holds (halves of 5)" not in shown.columns
    assert not any("resampled" in c for c in shown.columns)
    assert shown["agree (halves of 5)"].item() == "60%"


def test_the_page_compares_the_run_with_the_stored_tables(tmp_path):
    from l2l_core.experiments import reference_tables

    chapter = tmp_path / "build" / "results" / "01_quadratic"
    chapter.mkdir(parents=True)
    (chapter / "settings.json").write_text(json.dumps({"profile": "full"}))
    pd.DataFrame({"claim": ["a"], "distance": [0.5], "verdict": ["holds"]}).to_csv(chapter / "claims.csv", index=False)
    reference_tables.store(tmp_path / "build" / "results", tmp_path / "reference", reference_tables.this_machine())
    same = reference_views.stored_tables_view(tmp_path / "build", "full", tmp_path / "reference")
    assert "same machine" in same[0].data and "2 of 2 tables are identical" in same[0].data
    pd.DataFrame({"claim": ["a"], "distance": [0.4], "verdict": ["inconclusive"]}).to_csv(chapter / "claims.csv", index=False)
    stored = tmp_path / "reference" / "tables" / "machine.json"
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "cpu": "another CPU"}))
    other = reference_views.stored_tables_view(tmp_path / "build", "full", tmp_path / "reference")
    assert "another machine" in other[0].data and "1 of 2" in other[0].data and "1 verdict(s) changed" in other[0].data
    assert "0.2" in other[0].data  # |0.4 - 0.5| / 0.5
    assert "nothing to compare" in reference_views.stored_tables_view(tmp_path / "build", "quick")[0].data


def test_the_page_lists_the_stored_reference_lstms_with_their_own_budget(tmp_path):
    folder = tmp_path / "lstms" / "02_mnist"
    folder.mkdir(parents=True)
    facts = {"chapter": "02_mnist", "name": "lstm", "meta_seed": 1, "attempts": 2, "best_val_loss_sum": 38.0,
             "cpu": "AMD EPYC", "cpu_family_model": "25/1", "instruction_sets": "avx2, fma", "threads": 1,
             "commit": "0123456789abcdef", "seconds": 10.0}
    (folder / "provenance-lstm-seed1.json").write_text(json.dumps(facts))
    # a restart after a stuck first epoch of 100 trajectories, then 300 trajectories of the selected attempt
    # (the job spanned sessions: its provenance holds the last session's 10 s, its history every epoch's time)
    pd.DataFrame({"epoch": [0, 1, 0, 1, 2, 3], "trajectories": [0, 100, 100, 200, 300, 400],
                  "val_loss_sum": [230, 230, 226, 80, 60, 38], "attempt": [0, 0, 1, 1, 1, 1],
                  "seconds": [0, 900, 0, 1800, 1800, 1500]}).to_csv(folder / "history-lstm-seed1.csv", index=False)
    table = reference_views.reference_run_table(tmp_path / "lstms")
    assert table.loc[0, "trajectories"] == 300 and table.loc[0, "attempts"] == 2 and table.loc[0, "commit"] == "0123456"
    assert table.loc[0, "job seconds"] == 6000  # every epoch, the restarted attempt's included
    caption = reference_views.reference_run_view(tmp_path / "lstms")[0].data
    assert "1 LSTM stored" in caption and "38.00 to 38.00" in caption and "50.9" in caption
    assert "02_mnist 1.7 h" in caption
    assert "no LSTM yet" in reference_views.reference_run_view(tmp_path / "absent")[0].data


def test_the_seed_rule_section_counts_the_claims_that_ask_for_more_seeds(tmp_path):
    (tmp_path / "checks").mkdir()
    (tmp_path / "tables").mkdir()
    row = {"experiment": "04 ReLU", "setting": "ReLU", "claim": "c", "verdict_holm": "inconclusive", "distance": 0.1,
           "distance_lo": -0.1, "distance_hi": 0.3, "near_threshold": False, "R": 0.5, "R_lo": 0.3, "R_hi": 0.7,
           "seeds_needed": 31.0, "capped": True, "n_seeds": 5, "n_tasks": 50, "seed_cap": 10}
    pd.DataFrame([row, {**row, "setting": "MNIST", "verdict_holm": "holds", "R": 1.0, "R_lo": 0.95, "R_hi": 1.0,
                        "seeds_needed": 7.0, "capped": False},
                  {**row, "setting": "tie", "R_lo": 0.85, "seeds_needed": 2.0, "capped": False}]
                 ).to_csv(tmp_path / "checks" / "verdict_checks.csv", index=False)
    (tmp_path / "tables" / "machine.json").write_text(json.dumps(
        {"cpu": "CPU", "cpu_family_model": "1/2", "threads": 1, "how": "how", "commits": {"02": "abc"}}))
    table = reference_views.seed_rule_table(tmp_path)
    assert list(table["seeds the rule asks"]) == ["31 (above the cap of 10)", "7", "2"]
    caption = reference_views.seed_rule_view(tmp_path)[0].data
    assert "more than 5 seeds for 2 of them" in caption and "cap of 10 for 1 (ReLU: 31)" in caption
    assert "2 claims' R ranges reach below 0.9" in caption and "02 abc" in caption
    assert reference_views.seed_rule_table(tmp_path / "absent") is None
    assert "No seed-rule" in reference_views.seed_rule_view(tmp_path / "absent")[0].data
