"""The statistics every result table prints, against references computed independently: the t
quantile against scipy's (``scipy.stats.t.ppf(0.975, df)``, scipy 1.17.1, written out here since
scipy is no dependency), the single-seed cells against the rule that one seed has no sd, and
the campaign's and the tuning table's intervals against a hand computation."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from benchmarks import atjt_gain, campaign_report, tune_table
from denoiserec.report.comparison import SummaryRow
from denoiserec.report.folders import Group, Run, paired_interval
from denoiserec.report.html import mean_sd_text
from denoiserec.report.stats import mean_interval, sample_sd, seed_differences, t95

SCIPY_T975 = {1: 12.7062, 2: 4.30265, 9: 2.26216, 10: 2.22814, 11: 2.20099, 14: 2.14479,
              16: 2.11991, 25: 2.05954, 29: 2.04523, 30: 2.04227, 31: 2.03951, 35: 2.03011,
              45: 2.0141, 59: 2.001, 61: 1.99962, 100: 1.98397, 119: 1.9801, 121: 1.97976,
              500: 1.96472, 10**6: 1.95997}


@pytest.mark.parametrize("df", sorted(SCIPY_T975))
def test_t95_is_the_t_quantile_or_at_most_one_percent_wider(df):
    exact = SCIPY_T975[df]
    if df <= 30:
        assert t95(df) == pytest.approx(exact, abs=6e-4)  # the table's three decimals
    else:  # between tabulated df: the quantile of the df below, never narrower
        assert exact - 6e-4 <= t95(df) <= exact * 1.011


def test_t95_refuses_zero_degrees_of_freedom():
    with pytest.raises(ValueError, match="degree of freedom"):
        t95(0)


def test_intervals_of_ten_seeds_use_nine_degrees_of_freedom():
    values = [0.01 * i + 0.001 * (i % 3) for i in range(10)]
    half = SCIPY_T975[9] * statistics.stdev(values) / math.sqrt(10)
    assert mean_interval(values) == pytest.approx((statistics.mean(values), half), rel=3e-4)


def test_mean_interval_by_hand():
    mean, half = mean_interval([1.0, 2.0, 3.0])  # sd 1, n 3, t(2) = 4.303
    assert mean == 2.0 and abs(half - 4.303 / 3 ** 0.5) < 1e-12
    mean, half = mean_interval([0.25])
    assert mean == 0.25 and math.isnan(half)
    assert all(math.isnan(v) for v in mean_interval([]))


def test_every_table_pairs_the_same_seeds():
    a, b = {2022: 0.5, 2020: 0.3, 2021: 0.4}, {2021: 0.1, 2020: 0.2, 7: 9.0}
    assert seed_differences(a, b) == pytest.approx({2020: 0.1, 2021: 0.3})
    assert list(seed_differences(a, b)) == [2020, 2021]  # seed order, seed 7 and 2022 alone
    runs = [{"seed": s, "variant": "none", "ndcg@10": v} for s, v in b.items()]
    runs += [{"seed": s, "variant": "atjt", "ndcg@10": v} for s, v in a.items()]
    assert atjt_gain.paired(runs, "atjt", "ndcg@10") == pytest.approx(mean_interval([0.1, 0.3]))


def test_one_seed_writes_an_unknown_sd_to_summary_json():
    one = SummaryRow("sasrec", 0.0, 1, "d", "recbole", mean={"ndcg@10": 0.2},
                     std={"ndcg@10": sample_sd([0.2])})
    assert one.to_dict()["ndcg@10_std"] is None
    two = SummaryRow("sasrec", 0.0, 2, "d", "recbole", mean={"ndcg@10": 0.2},
                     std={"ndcg@10": sample_sd([0.1, 0.3])})
    assert two.to_dict()["ndcg@10_std"] == pytest.approx(math.sqrt(0.02))


def test_one_seed_has_no_sd_anywhere():
    assert math.isnan(sample_sd([0.2])) and math.isnan(sample_sd([0.1, float("nan")]))
    assert sample_sd([0.1, 0.3]) == pytest.approx(math.sqrt(0.02))
    run = Run(path=None, group="g", seed=2020, model="sasrec", dataset="d", protocol="recbole",
              protocol_config={}, noise=0.0, valid_metric="ndcg@10", best_epoch=0,
              valid={"ndcg@10": 0.1}, test={"ndcg@10": 0.2}, history=[], code={})
    assert mean_sd_text(Group("g", [run]), "test", "ndcg@10") == "0.2000"
    second = Run(**{**run.__dict__, "seed": 2021, "test": {"ndcg@10": 0.4}})
    assert mean_sd_text(Group("g", [run, second]), "test", "ndcg@10") == "0.3000 ± 0.1414"
    assert tune_table.mean_sd_cell([0.06]) == "0.0600"
    assert tune_table.mean_sd_cell([0.06, 0.08]) == "0.0700 ± 0.0141"
    assert tune_table.mean_sd_cell([]) == "–"


def test_paired_interval_pairs_by_seed_with_the_quantile_of_n_minus_one():
    def group(name, values):
        base = Run(path=None, group=name, seed=0, model="m", dataset="d", protocol="recbole",
                   protocol_config={}, noise=0.0, valid_metric="ndcg@10", best_epoch=0,
                   valid={}, test={}, history=[], code={})
        return Group(name, [Run(**{**base.__dict__, "seed": s, "test": {"ndcg@10": v}})
                            for s, v in values.items()])

    a = group("a", {1: 0.30, 2: 0.32, 3: 0.35, 4: 0.31})
    b = group("b", {4: 0.30, 3: 0.30, 2: 0.31, 9: 0.5})  # listed in another order, seed 9 alone
    diffs = [0.32 - 0.31, 0.35 - 0.30, 0.31 - 0.30]  # seeds 2, 3, 4
    half = SCIPY_T975[2] * statistics.stdev(diffs) / math.sqrt(3)
    found = paired_interval(a, b, "test", "ndcg@10")
    assert found.seeds == 3
    assert (found.difference, found.low, found.high) == pytest.approx(
        (statistics.mean(diffs), statistics.mean(diffs) - half, statistics.mean(diffs) + half),
        abs=1e-4)


def test_the_campaign_table_prints_small_p_values_as_bounds(monkeypatch):
    from denoiserec import compare
    from denoiserec.noise import significance

    monkeypatch.setattr(compare, "per_user_ndcg", lambda path: {"u1": 1.0, "u2": 0.5})
    monkeypatch.setattr(significance, "paired_permutation_test",
                        lambda a, b: significance.PairedTest(0.1, 1 / 10001, 2, 0.0, 0.2))
    runs = {s: ({"test": {"ndcg@10": 0.3 + 0.01 * s}}, None) for s in (1, 2)}
    other = {s: ({"test": {"ndcg@10": 0.2}}, None) for s in (1, 2, 3)}
    assert campaign_report._difference(runs, other).endswith("(2, p<0.001)")


def test_the_campaign_table_shows_no_own_auc_for_a_model_without_noise_scores(tmp_path):
    scored = tmp_path / "native"
    baseline_only = tmp_path / "surprise"
    for path, detection in ((scored, {"scorer": "native", "roc_auc": 0.8,
                                      "surprise_roc_auc": 0.6}),
                            (baseline_only, {"scorer": "surprise", "roc_auc": 0.59})):
        path.mkdir()
        (path / "detection.json").write_text(json.dumps(detection))
    assert campaign_report._detection({2020: ({}, scored)}) == "0.800 / 0.600"
    assert campaign_report._detection({2020: ({}, baseline_only)}) == "– / 0.590"


def test_a_folder_without_results_csv_takes_plain_sasrec_as_the_reference(tmp_path):
    from denoiserec.report.folders import Folder
    from denoiserec.report.html import _ordered, _reference

    def group(name, model):
        run = Run(path=None, group=name, seed=2020, model=model, dataset="ml-100k",
                  protocol="recbole", protocol_config={}, noise=0.0, valid_metric="ndcg@10",
                  best_epoch=0, valid={}, test={}, history=[], code={})
        return Group(name, [run])

    groups = [group("ml-100k-bert4rec", "bert4rec"), group("ml-100k-sasrec-random", "sasrec"),
              group("ml-100k-clean-retrain", "sasrec"), group("ml-100k-sasrec", "sasrec"),
              group("ml-100k-msdccl", "msdccl")]
    ordered = _ordered(Folder(tmp_path, "cells", groups))
    assert ordered[0].name == "ml-100k-sasrec"
    assert _reference(groups[0], ordered).name == "ml-100k-sasrec"


def test_cells_too_old_to_record_their_commit_take_the_folders_pinned_one(tmp_path):
    from denoiserec.report.folders import read_folder

    def cell(name, code):
        folder = tmp_path / "cells" / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("train:\n  seed: 2020\n")
        metrics = {"model": "sasrec", "dataset": "ml-100k", "protocol": "recbole",
                   "valid_metric": "ndcg@10", "best_epoch": 0, "epochs": [], "finished": True,
                   "best_valid": {"ndcg@10": 0.07}, "test": {"ndcg@10": 0.068}}
        (folder / "metrics.json").write_text(json.dumps({**metrics, **code}))

    cell("old-seed2020", {})
    cell("new-seed2020", {"code": {"commit": "f" * 40, "dirty": False}})
    assert {g.name: g.first.commit for g in read_folder(tmp_path).groups}["old"].startswith(
        "unknown")
    (tmp_path / "code.json").write_text(json.dumps({"commit": "6ec7e38" + "0" * 33,
                                                    "dirty": False}))
    commits = {g.name: g.first.commit for g in read_folder(tmp_path).groups}
    assert commits == {"old": "6ec7e38000 (the folder's pinned checkout)", "new": "f" * 10}
