"""Bootstrap intervals, paired verdicts, noise ceilings and the search figures, on fixtures with known answers."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from dass import stats


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (6, 30)).astype(float)      # many ties
    y = rng.normal(size=(6, 30))
    got = stats.spearman_rows(x, y)
    want = [sps.spearmanr(a, b).statistic for a, b in zip(x, y)]
    assert got == pytest.approx(want, abs=1e-12)
    assert math.isnan(stats.spearman_rows([1, 1, 1], [1, 2, 3])[0])


def test_identical_and_reversed_rankings():
    truth = np.arange(40, dtype=float)
    rho, lo, hi = stats.bootstrap_spearman(truth * 2 + 1, truth, num=500)
    assert (rho, lo, hi) == (1.0, 1.0, 1.0)
    rho, lo, hi = stats.bootstrap_spearman(-truth, truth, num=500)
    assert (rho, lo, hi) == (-1.0, -1.0, -1.0)


def test_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=80)
    score = truth + rng.normal(scale=1.0, size=80)
    rho, lo, hi = stats.bootstrap_spearman(score, truth, num=4000, seed=3)
    ref = sps.bootstrap((score, truth), lambda a, b, axis: stats.spearman_rows(a, b), paired=True,
                        vectorized=True, n_resamples=4000, method="percentile", random_state=5).confidence_interval
    assert lo < rho < hi
    assert lo == pytest.approx(ref.low, abs=0.03) and hi == pytest.approx(ref.high, abs=0.03)
    # about +-0.35 at n=20, as the benchmark's design assumed; narrower with more students
    small = stats.bootstrap_spearman(score[:20], truth[:20], num=2000)
    assert small[2] - small[1] > hi - lo


def _tasks(noise_a, noise_b, n=150, k=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(k):
        truth = rng.normal(size=n)
        out.append(stats.TaskScores(f"t{t}", truth, {
            "dass": truth + rng.normal(scale=noise_a, size=n),
            "other": truth + rng.normal(scale=noise_b, size=n)}))
    return out


def test_paired_verdicts():
    # clearly better
    rows = stats.comparison_rows(stats.paired_bootstrap(_tasks(0.3, 2.0), num=1000), "dass")
    pooled = next(r for r in rows if r["task"] == "pooled" and r["method"] == "other")
    assert pooled["verdict"] == "better" and pooled["diff_lo"] > 0
    # clearly worse
    rows = stats.comparison_rows(stats.paired_bootstrap(_tasks(2.0, 0.3), num=1000), "dass")
    assert next(r for r in rows if r["task"] == "pooled" and r["method"] == "other")["verdict"] == "worse"
    # two methods that differ by noise only: same signal, independent noise of the same size
    rows = stats.comparison_rows(stats.paired_bootstrap(_tasks(1.0, 1.0, n=60, k=2, seed=4), num=1000), "dass")
    for r in rows:
        if r["method"] == "other":
            assert r["verdict"] == "not resolved", r
            assert r["diff_lo"] < 0 < r["diff_hi"]
    ref = [r for r in rows if r["method"] == "dass"]
    assert all("verdict" not in r and r["lo"] <= r["spearman"] <= r["hi"] for r in ref)


def test_multi_run_method_is_the_mean_over_runs():
    truth = np.arange(10.0)
    runs = np.stack([truth, -truth])                 # rho +1 and -1 -> mean 0
    boot = stats.paired_bootstrap([stats.TaskScores("t", truth, {"dass": runs, "x": truth})], num=200)
    assert boot["point"][("t", "dass")] == pytest.approx(0.0)
    assert boot["point"][("pooled", "x")] == pytest.approx(1.0)
    assert boot["samples"][("t", "dass")].shape == (200,)


def test_verdict_edges():
    assert stats.verdict(0.01, 0.2) == "better"
    assert stats.verdict(-0.2, -0.01) == "worse"
    assert stats.verdict(-0.1, 0.1) == "not resolved"
    assert stats.verdict(0.0, 0.1) == "not resolved"
    assert stats.verdict(math.nan, 1.0) == "not resolved"


def test_noise_ceiling_known_labels():
    same = stats.noise_ceiling([[1, 2, 3, 4], [10, 20, 30, 40]])
    assert same == {"seeds": 2, "seed_rho": 1.0, "ceiling": 1.0}
    # spearman([1,2,3,4], [1,3,2,4]) = 0.8 -> mean of two seeds: reliability 2*0.8/1.8, ceiling its root
    c = stats.noise_ceiling([[1, 2, 3, 4], [1, 3, 2, 4]])
    assert c["seed_rho"] == pytest.approx(0.8) and c["ceiling"] == pytest.approx(math.sqrt(1.6 / 1.8))
    # three seeds: the mean pairwise Spearman, Spearman-Brown with k=3
    c3 = stats.noise_ceiling([[1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 3, 4]])
    r = (0.8 + 1.0 + 0.8) / 3
    assert c3["seed_rho"] == pytest.approx(r) and c3["ceiling"] == pytest.approx(math.sqrt(3 * r / (1 + 2 * r)))
    assert math.isnan(stats.noise_ceiling([[1, 2, 3]])["ceiling"])        # one seed: unknown
    assert stats.noise_ceiling([[1, 2, 3, 4], [4, 3, 2, 1]])["ceiling"] == 0.0


def test_search_figures_under_a_budget():
    truth = np.array([50.0, 60.0, 70.0, 80.0, 90.0])
    within = np.array([True, True, True, True, False])      # the 90% student is over budget
    perfect = truth.copy()
    worst = -truth
    out = stats.search_bootstrap(truth, {"dass": perfect, "worst": worst}, within, k=1, num=300)
    assert out["oracle"][0] == 80.0
    assert out["dass"][0] == 80.0 and out["worst"][0] == 50.0
    assert np.all(out["dass"][1] >= out["worst"][1])
    top2 = stats.search_bootstrap(truth, {"worst": worst}, within, k=2, num=10)
    assert top2["worst"][0] == 60.0


# --------------------------------------------------------------------------------------------- #
# two levels: students and meta-training runs
# --------------------------------------------------------------------------------------------- #

def _runs_of_quality(truth: np.ndarray, qualities, rng) -> np.ndarray:
    """One run per quality q: scores correlating about q with the truth (a meta-training seed's luck)."""
    z = (truth - truth.mean()) / truth.std()
    return np.stack([q * z + np.sqrt(1 - q * q) * rng.normal(size=len(truth)) for q in qualities])


def _seeded_tasks(q_a, q_b, k=3, n=150, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(k):
        truth = rng.normal(size=n)
        out.append(stats.TaskScores(f"t{t}", truth, {"dass": _runs_of_quality(truth, q_a, rng),
                                                      "other": _runs_of_quality(truth, q_b, rng)}))
    return out


def _pooled(rows, method):
    return next(r for r in rows if r["task"] == "pooled" and r["method"] == method)


def test_seed_noise_alone_is_not_resolved_once_runs_are_resampled():
    # the same kind of predictor twice: each run's quality is seed luck, and the two sets of seeds happened to
    # differ (spread over seeds 0.15); resampling students alone calls this a win, resampling runs does not
    tasks = _seeded_tasks([0.45, 0.6, 0.75], [0.3, 0.45, 0.6])
    students_only = _pooled(stats.comparison_rows(stats.paired_bootstrap(tasks, num=2000, runs=False), "dass"),
                            "other")
    two_level = _pooled(stats.comparison_rows(stats.paired_bootstrap(tasks, num=2000), "dass"), "other")
    assert students_only["verdict"] == "better"
    assert two_level["verdict"] == "not resolved" and two_level["diff_lo"] < 0 < two_level["diff_hi"]
    assert two_level["diff"] == pytest.approx(students_only["diff"])     # the point estimate is the same
    # a real difference survives the second level
    real = _pooled(stats.comparison_rows(stats.paired_bootstrap(_seeded_tasks([0.7, 0.75, 0.8], [0.2, 0.25, 0.3]),
                                                                num=2000), "dass"), "other")
    assert real["verdict"] == "better" and real["diff_lo"] > 0.3


def test_run_draws_are_shared_by_the_tasks_of_a_resample():
    """A run is one model: a resample that draws a bad run draws it for every task, so the pooled interval is
    as wide as the seed spread, not narrowed by averaging independent draws over tasks."""
    tasks = _seeded_tasks([0.2, 0.8], [0.5, 0.5], k=6)
    boot = stats.paired_bootstrap(tasks, num=4000)
    s = boot["samples"][("pooled", "dass")]
    # with one shared draw, about a quarter of the resamples hold only the bad run: a pooled figure near 0.2
    assert np.mean(s < 0.3) > 0.15 and np.mean(s > 0.7) > 0.15


def test_the_seed_ensemble_row():
    tasks = _seeded_tasks([0.5, 0.5, 0.5, 0.5], [0.5], k=2, n=300)
    boot = stats.paired_bootstrap(tasks, num=500, ensembles=["dass"])
    rows = stats.comparison_rows(boot, "dass")
    ens = _pooled(rows, "dass" + stats.ENSEMBLE)
    # four runs with independent errors: their standardised mean ranks better than any one of them
    assert ens["spearman"] > _pooled(rows, "dass")["spearman"] + 0.1 and ens["verdict"] == "worse"
    z = stats.standardised([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    assert np.allclose(z[0], [-1, 0, 1]) and np.all(z[1] == 0)               # sample std; a constant run: zeros


def test_search_figures_resample_runs_too():
    truth = np.arange(20.0)
    within = np.ones(20, bool)
    good, bad = truth.copy(), -truth
    two = stats.search_bootstrap(truth, {"m": np.stack([good, bad])}, within, k=1, num=2000, seed=1)
    one = stats.search_bootstrap(truth, {"m": np.stack([good, bad])}, within, k=1, num=2000, seed=1, runs=False)
    assert two["m"][0] == one["m"][0] == pytest.approx((19 + 0) / 2)
    assert np.std(two["m"][1]) > np.std(one["m"][1])            # the spread of the runs widens the interval


def test_an_undefined_spearman_is_skipped_without_a_warning():
    """A resample whose students share one label has no Spearman: it is left out of the mean, not counted as
    0, and numpy's all-NaN warning does not reach the user (pytest -W error turns it into a failure)."""
    import warnings
    from dass.metrics import nanmean_axis
    a = np.array([[0.5, np.nan], [0.7, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = nanmean_axis(a, axis=0)
    assert m[0] == pytest.approx(0.6) and np.isnan(m[1])
    truth = np.array([1.0, 1.0, 1.0, 1.0])   # constant labels: every Spearman undefined
    tasks = [stats.TaskScores("t", truth, {"a": np.arange(4.0)})]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = stats.paired_bootstrap(tasks, num=20)
    assert math.isnan(out["point"][("t", "a")]) and np.isnan(out["samples"][("pooled", "a")]).all()
