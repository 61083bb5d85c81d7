"""The model gate: the paired bootstrap, each refusal rule, the no-champion path, the table."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from citeops.configs.settings import GateSettings, SettingsError, load_settings
from citeops.tasks.classifier.stats import (
    bootstrap_f1_interval,
    class_f1,
    macro_f1,
    paired_bootstrap_f1_difference,
)
from citeops.tasks.data.multivers import Example
from citeops.tasks.validate.behaviour import BehaviourReport
from citeops.tasks.validate.compare import paired_latency_p95
from citeops.tasks.validate.gate import (
    BenchmarkPredictions,
    GateFailed,
    LatencyComparison,
    decide,
    require_gate,
)

RNG_SEED = 7
GOOD_BEHAVIOUR = BehaviourReport(passed=45, total=45)
FAST_LATENCY = LatencyComparison(candidate_p95_ms=40.0, champion_p95_ms=40.0)


def _gold(n: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).choice(3, size=n, p=[0.4, 0.35, 0.25])


def _noisy(gold: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Predictions equal to ``gold`` on a random ``accuracy`` share, random elsewhere."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(gold)) > accuracy
    pred = gold.copy()
    pred[wrong] = (gold[wrong] + rng.integers(1, 3, size=wrong.sum())) % 3
    return pred


def _bench(
    name: str,
    gold: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    majority: int | None = 0,
) -> BenchmarkPredictions:
    return BenchmarkPredictions(
        name=name,
        gold=gold.tolist(),
        candidate=candidate.tolist(),
        champion=None if champion is None else champion.tolist(),
        majority_label=majority,
    )


def _settings(**changes: float) -> GateSettings:
    """The defaults (not a profile's), with ``changes``."""
    return GateSettings(**changes)


def _pair_of_benchmarks(cand_acc: float, champ_acc: float) -> list[BenchmarkPredictions]:
    out = []
    for i, name in enumerate(["scifact", "citation-integrity"]):
        gold = _gold(500, seed=i)
        out.append(
            _bench(name, gold, _noisy(gold, cand_acc, 10 + i), _noisy(gold, champ_acc, 20 + i))
        )
    return out


# ---- metrics and the bootstrap ---------------------------------------------------------


def test_macro_and_class_f1_equal_sklearn_including_absent_classes() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 3, 200), rng.integers(0, 3, 200)) for _ in range(5)]
    cases.append((np.zeros(30, int), np.zeros(30, int)))  # classes 1 and 2 absent everywhere
    cases.append((np.array([0, 0, 1, 1]), np.array([2, 2, 2, 2])))  # a class never predicted
    for gold, pred in cases:
        expected = f1_score(gold, pred, labels=[0, 1, 2], average=None, zero_division=0)
        assert list(class_f1(gold, pred).values()) == pytest.approx(expected.tolist())
        assert macro_f1(gold, pred) == pytest.approx(
            f1_score(gold, pred, labels=[0, 1, 2], average="macro", zero_division=0)
        )


def test_bootstrap_without_resampling_noise_equals_sklearn_difference() -> None:
    """Every resample's difference matches sklearn on the same resampled indices."""
    from sklearn.metrics import f1_score

    gold = _gold(120)
    a, b = _noisy(gold, 0.7, 1), _noisy(gold, 0.5, 2)
    point, low, high = paired_bootstrap_f1_difference(gold, a, b, resamples=200, seed=3)
    expected = f1_score(gold, a, labels=[0, 1, 2], average="macro", zero_division=0) - f1_score(
        gold, b, labels=[0, 1, 2], average="macro", zero_division=0
    )
    assert point == pytest.approx(expected)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(gold), size=(200, len(gold)))
    diffs = [
        f1_score(gold[i], a[i], labels=[0, 1, 2], average="macro", zero_division=0)
        - f1_score(gold[i], b[i], labels=[0, 1, 2], average="macro", zero_division=0)
        for i in idx
    ]
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_single_model_interval_matches_sklearn_on_the_same_resamples() -> None:
    """One implementation: the single-model interval resamples as the paired one does."""
    from sklearn.metrics import f1_score

    gold = _gold(150)
    pred = _noisy(gold, 0.6, 1)
    point, low, high = bootstrap_f1_interval(gold, pred, resamples=200, seed=4)
    assert point == pytest.approx(
        f1_score(gold, pred, labels=[0, 1, 2], average="macro", zero_division=0)
    )
    idx = np.random.default_rng(4).integers(0, len(gold), size=(200, len(gold)))
    scores = [
        f1_score(gold[i], pred[i], labels=[0, 1, 2], average="macro", zero_division=0) for i in idx
    ]
    assert (low, high) == pytest.approx(tuple(np.percentile(scores, [2.5, 97.5])))
    assert low < point < high
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_f1_interval([], [], 200, 0)


def test_bootstrap_interval_contains_point_and_is_seeded() -> None:
    gold = _gold(600)
    a, b = _noisy(gold, 0.62, 1), _noisy(gold, 0.6, 2)
    first = paired_bootstrap_f1_difference(gold, a, b, resamples=1000, seed=5)
    point, low, high = first
    assert low < point < high
    assert paired_bootstrap_f1_difference(gold, a, b, resamples=1000, seed=5) == first
    assert paired_bootstrap_f1_difference(gold, a, b, resamples=1000, seed=6) != first


def test_bootstrap_is_narrow_when_models_agree_and_excludes_zero_for_a_worse_candidate() -> None:
    gold = _gold(400)
    champion = _noisy(gold, 0.7, 1)
    nearly_same = champion.copy()
    nearly_same[:4] = (nearly_same[:4] + 1) % 3
    _, low, high = paired_bootstrap_f1_difference(gold, nearly_same, champion, 1000, 0)
    assert high - low < 0.02

    worse = _noisy(gold, 0.45, 2)
    point, low, high = paired_bootstrap_f1_difference(gold, worse, champion, 1000, 0)
    assert point < 0 and high < 0


def test_bootstrap_of_600_examples_and_1000_resamples_is_fast() -> None:
    gold = _gold(600)
    a, b = _noisy(gold, 0.6, 1), _noisy(gold, 0.6, 2)
    start = time.perf_counter()
    paired_bootstrap_f1_difference(gold, a, b, resamples=1000, seed=0)
    assert time.perf_counter() - start < 1.0


def test_bootstrap_rejects_empty_or_unequal_inputs() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap_f1_difference([], [], [], 1000, 0)
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap_f1_difference([0, 1], [0], [0, 1], 1000, 0)


def test_benchmark_predictions_refuse_mismatched_examples() -> None:
    with pytest.raises(ValueError, match="same examples"):
        BenchmarkPredictions("scifact", [0, 1, 2], [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="outside 0..2"):
        BenchmarkPredictions("scifact", [0, 1, 3], [0, 1, 2], None)


# ---- the rules with a champion ---------------------------------------------------------


def test_a_better_candidate_passes_with_every_interval_reported() -> None:
    decision = decide(_pair_of_benchmarks(0.75, 0.6), FAST_LATENCY, GOOD_BEHAVIOUR, _settings())
    assert decision.passed and decision.reasons == []
    assert decision.has_champion and decision.mean_improvement is not None
    assert decision.mean_improvement > 0.05
    for row in decision.rows:
        assert row.ci_low is not None and row.ci_high is not None
        assert row.ci_low < row.difference < row.ci_high
    require_gate(decision)  # does not raise


def test_significant_regression_is_refused_with_its_interval() -> None:
    decision = decide(_pair_of_benchmarks(0.5, 0.75), FAST_LATENCY, GOOD_BEHAVIOUR, _settings())
    assert not decision.passed
    significant = [r for r in decision.reasons if "significantly below" in r]
    assert {r.split(":")[0] for r in significant} == {"scifact", "citation-integrity"}
    row = decision.rows[0]
    assert f"95 % interval {row.ci_low:+.3f} to {row.ci_high:+.3f}" in significant[0]
    with pytest.raises(GateFailed) as raised:
        require_gate(decision)
    assert raised.value.decision is decision
    for reason in decision.reasons:
        assert reason in str(raised.value)


def test_point_drop_above_max_f1_drop_is_refused_even_when_not_significant() -> None:
    gold = _gold(300)
    champion = _noisy(gold, 0.7, 1)
    candidate = champion.copy()
    flip = np.flatnonzero(candidate == gold)[:12]  # a few right answers made wrong
    candidate[flip] = (candidate[flip] + 1) % 3
    bench = [_bench("scifact", gold, candidate, champion)]
    point, low, high = paired_bootstrap_f1_difference(gold, candidate, champion, 1000, 0)
    assert -0.1 < point < -0.02

    strict = decide(bench, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(max_f1_drop=0.02))
    drops = [r for r in strict.reasons if "dropped by" in r]
    assert len(drops) == 1 and f"dropped by {-point:.3f}" in drops[0]
    assert "gate.max_f1_drop 0.020" in drops[0]

    lenient = decide(
        bench,
        FAST_LATENCY,
        GOOD_BEHAVIOUR,
        _settings(max_f1_drop=0.5, min_improvement=-1.0),
    )
    assert not [r for r in lenient.reasons if "dropped by" in r]

    # the same drop on fewer examples than min_drop_examples: only the interval judges it
    few = decide(bench, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(min_drop_examples=301))
    assert not [r for r in few.reasons if "dropped by" in r]


def test_mean_improvement_below_minimum_is_refused() -> None:
    gold = _gold(300)
    champion = _noisy(gold, 0.7, 1)
    same = [_bench("scifact", gold, champion, champion)]
    at_zero = decide(same, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(min_improvement=0.0))
    assert at_zero.passed and at_zero.mean_improvement == pytest.approx(0.0)

    demanding = decide(same, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(min_improvement=0.01))
    assert demanding.reasons == [
        "mean macro-F1 difference over 1 benchmarks is +0.000, below gate.min_improvement +0.010."
    ]


def test_feedback_holdout_counts_in_the_mean_but_has_no_class_floor() -> None:
    benches = _pair_of_benchmarks(0.7, 0.6)
    gold = np.array([0, 0, 0, 1, 2, 2, 0, 1])
    never_nei_or_refute = np.zeros_like(gold)
    benches.append(
        _bench("feedback-holdout", gold, never_nei_or_refute, never_nei_or_refute, majority=None)
    )
    decision = decide(benches, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(class_f1_floor=0.05))
    assert decision.passed, decision.reasons
    assert [row.benchmark for row in decision.rows][-1] == "feedback-holdout"
    assert decision.rows[-1].difference == 0.0
    assert decision.mean_improvement == pytest.approx(
        np.mean([row.difference for row in decision.rows])
    )

    as_benchmark = [*benches[:2], _bench("other", gold, never_nei_or_refute, gold, majority=None)]
    refused = decide(as_benchmark, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(class_f1_floor=0.05))
    assert any(r.startswith("other: candidate F1 of class NEI is 0.000") for r in refused.reasons)


def test_class_floor_refuses_a_collapsed_class_present_in_gold_only() -> None:
    gold = _gold(300)
    candidate = _noisy(gold, 0.8, 1)
    candidate[candidate == 2] = 0  # REFUTE never predicted
    bench = [_bench("scifact", gold, candidate, None)]
    decision = decide(bench, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(class_f1_floor=0.05))
    floor = [r for r in decision.reasons if "class_f1_floor" in r]
    assert floor == [
        f"scifact: candidate F1 of class REFUTE is 0.000, below gate.class_f1_floor 0.050 "
        f"({int((gold == 2).sum())} gold examples)."
    ]
    assert decide(bench, FAST_LATENCY, GOOD_BEHAVIOUR, _settings(class_f1_floor=0.0)).passed

    no_refute_gold = gold[gold != 2]
    no_refute_pred = _noisy(no_refute_gold, 0.8, 2)
    no_refute_pred[no_refute_pred == 2] = 0
    absent = [_bench("scifact", no_refute_gold, no_refute_pred, None)]
    assert decide(absent, FAST_LATENCY, GOOD_BEHAVIOUR, _settings()).passed


def test_slower_candidate_is_refused_beyond_the_latency_allowance() -> None:
    benches = _pair_of_benchmarks(0.7, 0.7)
    settings = _settings(max_latency_increase=0.5, min_improvement=-1.0)
    within = LatencyComparison(candidate_p95_ms=59.0, champion_p95_ms=40.0)
    assert decide(benches, within, GOOD_BEHAVIOUR, settings).passed
    slow = LatencyComparison(candidate_p95_ms=61.0, champion_p95_ms=40.0)
    decision = decide(benches, slow, GOOD_BEHAVIOUR, settings)
    assert decision.reasons == [
        "latency: candidate p95 61.0 ms per pair exceeds 60.0 ms, the champion's 40.0 ms "
        "plus gate.max_latency_increase 50 %."
    ]


def test_behaviour_share_below_minimum_is_refused_with_the_first_failure() -> None:
    benches = _pair_of_benchmarks(0.7, 0.7)
    settings = _settings(behaviour_min_pass=0.8, min_improvement=-1.0)
    weak = BehaviourReport(passed=30, total=45, failures=["self-support 'x': predicted NEI"] * 15)
    decision = decide(benches, FAST_LATENCY, weak, settings)
    assert decision.reasons == [
        "behaviour: 30 of 45 checks hold (66.7 %), below gate.behaviour_min_pass 80.0 %; "
        "first failure: self-support 'x': predicted NEI."
    ]
    enough = BehaviourReport(passed=36, total=45, failures=["f"] * 9)
    assert decide(benches, FAST_LATENCY, enough, settings).passed
    none_ran = decide(benches, FAST_LATENCY, BehaviourReport(0, 0), settings)
    assert "no behavioural checks were run" in none_ran.reasons[0]


# ---- no champion, empty benchmarks -----------------------------------------------------


def test_without_champion_only_floors_and_the_majority_baseline_apply() -> None:
    gold = _gold(300)
    good = _bench("scifact", gold, _noisy(gold, 0.6, 1), None, majority=0)
    holdout = _bench("feedback-holdout", gold[:20], gold[:20], None, majority=None)
    slow = LatencyComparison(candidate_p95_ms=500.0, champion_p95_ms=None)
    decision = decide([good, holdout], slow, GOOD_BEHAVIOUR, _settings())
    assert decision.passed and not decision.has_champion
    assert decision.mean_improvement is None
    assert all(row.difference is None for row in decision.rows)
    assert decision.rows[0].baseline_f1 == pytest.approx(macro_f1(gold, np.zeros_like(gold)))
    assert any("no champion" in note for note in decision.notes)

    majority_only = _bench("scifact", gold, np.zeros_like(gold), None, majority=0)
    refused = decide([majority_only], slow, GOOD_BEHAVIOUR, _settings(class_f1_floor=0.0))
    assert refused.reasons == [
        f"scifact: candidate macro F1 {refused.rows[0].candidate_f1:.3f} does not beat the "
        f"majority-class baseline's {refused.rows[0].baseline_f1:.3f}."
    ]
    off = _settings(class_f1_floor=0.0, baseline_margin=-1.0)
    assert decide([majority_only], slow, GOOD_BEHAVIOUR, off).passed


def test_a_candidate_better_than_the_champion_must_still_beat_the_majority_baseline() -> None:
    gold = _gold(300)
    majority = np.zeros_like(gold)
    champion = (gold + 1) % 3  # always wrong
    candidate = champion.copy()
    candidate[:40] = gold[:40]  # better than the champion, worse than the baseline
    bench = _bench("citation-integrity", gold, candidate, champion, majority=0)
    assert 0 < macro_f1(gold, candidate) < macro_f1(gold, majority)
    loose = _settings(class_f1_floor=0.0, max_f1_drop=1.0)
    decision = decide([bench], FAST_LATENCY, GOOD_BEHAVIOUR, loose)
    assert decision.has_champion and decision.rows[0].difference > 0
    assert [r for r in decision.reasons if "majority-class baseline" in r] == [
        f"citation-integrity: candidate macro F1 {decision.rows[0].candidate_f1:.3f} does not "
        f"beat the majority-class baseline's {decision.rows[0].baseline_f1:.3f}."
    ]
    off = _settings(class_f1_floor=0.0, max_f1_drop=1.0, baseline_margin=-1.0)
    assert decide([bench], FAST_LATENCY, GOOD_BEHAVIOUR, off).passed


def test_empty_benchmark_is_skipped_with_a_note() -> None:
    benches = _pair_of_benchmarks(0.75, 0.6)
    benches.append(BenchmarkPredictions("feedback-holdout", [], [], None))
    decision = decide(benches, FAST_LATENCY, GOOD_BEHAVIOUR, _settings())
    assert decision.passed
    assert [row.benchmark for row in decision.rows] == ["scifact", "citation-integrity"]
    assert "feedback-holdout: no examples, skipped." in decision.notes

    nothing = decide(
        [BenchmarkPredictions("scifact", [], [], None)], FAST_LATENCY, GOOD_BEHAVIOUR, _settings()
    )
    assert not nothing.passed and "no benchmark had any examples" in nothing.reasons[0]


def test_champion_missing_on_one_benchmark_is_a_wiring_error() -> None:
    benches = _pair_of_benchmarks(0.7, 0.7)
    gold = _gold(50)
    benches.append(_bench("feedback-holdout", gold, gold, None, majority=None))
    with pytest.raises(ValueError, match="feedback-holdout have no champion predictions"):
        decide(benches, FAST_LATENCY, GOOD_BEHAVIOUR, _settings())


# ---- reports ---------------------------------------------------------------------------


def test_markdown_and_text_tables_show_every_benchmark_interval_and_reason() -> None:
    benches = _pair_of_benchmarks(0.5, 0.75)
    benches.append(BenchmarkPredictions("feedback-holdout", [], [], []))
    weak = BehaviourReport(
        passed=44, total=45, failures=["case 'Statins reduce': NEI became SUPPORT"]
    )
    decision = decide(benches, FAST_LATENCY, weak, _settings())
    markdown = decision.markdown_table()
    text = decision.text_table()
    assert markdown.startswith(
        "| benchmark | n | candidate F1 | champion F1 | difference (95 % CI)"
    )
    for row in decision.rows:
        interval = f"{row.difference:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
        for table in (markdown, text):
            assert row.benchmark in table and interval in table
            assert f"{row.candidate_f1:.3f}" in table and f"{row.baseline_f1:.3f}" in table
        assert f"| {row.benchmark} | {row.examples} |" in markdown
    for table in (markdown, text):
        assert "decision: REFUSE" in table
        assert "44 of 45 checks hold" in table
        assert "case 'Statins reduce': NEI became SUPPORT" in table
        assert "feedback-holdout: no examples, skipped." in table
        for reason in decision.reasons:
            assert reason in table


def test_to_dict_is_json_and_mlflow_metrics_are_flat_floats() -> None:
    decision = decide(_pair_of_benchmarks(0.75, 0.6), FAST_LATENCY, GOOD_BEHAVIOUR, _settings())
    restored = json.loads(json.dumps(decision.to_dict()))
    assert restored["passed"] is True
    assert restored["rows"][0]["ci_low"] == decision.rows[0].ci_low
    assert restored["thresholds"]["bootstrap_resamples"] == 1000
    metrics = decision.mlflow_metrics()
    assert metrics["gate_passed"] == 1.0
    assert metrics["gate_scifact_ci_low"] == decision.rows[0].ci_low
    assert (
        metrics["gate_citation-integrity_candidate_f1_REFUTE"]
        == (decision.rows[1].candidate_class_f1["REFUTE"])
    )
    assert all(isinstance(v, float) for v in metrics.values())

    lone = decide(
        [_bench("scifact", _gold(50), _gold(50), None)],
        LatencyComparison(30.0, None),
        GOOD_BEHAVIOUR,
        _settings(),
    )
    assert "gate_mean_improvement" not in lone.mlflow_metrics()
    assert "gate_champion_p95_ms" not in lone.mlflow_metrics()


# ---- settings --------------------------------------------------------------------------


def test_gate_settings_defaults_bounds_and_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = GateSettings()
    assert defaults.max_f1_drop == 0.02 and defaults.min_improvement == 0.0
    assert load_settings(profile="local").stats.bootstrap_resamples == 1000
    with pytest.raises(SettingsError, match="stats.bootstrap_resamples"):
        load_settings(stats={"bootstrap_resamples": 100})
    monkeypatch.setenv("CITEOPS_GATE__MAX_F1_DROP", "0.05")
    assert load_settings().gate.max_f1_drop == 0.05
    monkeypatch.delenv("CITEOPS_GATE__MAX_F1_DROP")
    # the local recipe holds the default gate since self-support pairs and class offsets
    local = load_settings(profile="local").gate
    assert local.class_f1_floor >= defaults.class_f1_floor
    assert local.behaviour_min_pass >= defaults.behaviour_min_pass
    assert load_settings(profile="production").gate.class_f1_floor == defaults.class_f1_floor


class _SimulatedMachine:
    """A clock in seconds that models advance; some calls also pay for other work."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0
        self.interrupted_calls: set[int] = set()

    def clock(self) -> float:
        return self.now

    def run(self, seconds: float) -> None:
        extra = 0.060 if self.calls in self.interrupted_calls else 0.0
        self.calls += 1
        self.now += seconds + extra


class _TimedModel:
    def __init__(self, machine: _SimulatedMachine, seconds: float) -> None:
        self.machine, self.seconds = machine, seconds

    def predict_proba(self, claims: list[str], evidences: list[str]) -> np.ndarray:
        self.machine.run(self.seconds)
        return np.full((len(claims), 3), 1 / 3)


def _timing_examples(n: int) -> list[Example]:
    return [Example(claim=f"claim {i}", evidence=f"evidence {i}", label=0) for i in range(n)]


@pytest.mark.parametrize(("repeats", "interrupted_p95"), [(1, 110.0), (3, 50.0)])
def test_latency_keeps_each_pairs_fastest_call_so_a_burst_of_other_work_does_not_refuse(
    repeats: int, interrupted_p95: float
) -> None:
    machine = _SimulatedMachine()
    candidate, champion = _TimedModel(machine, 0.050), _TimedModel(machine, 0.050)
    # calls 0-1 warm up; then per pair `repeats` rounds of (candidate, champion): the
    # candidate's first call of every fifth pair also pays for 60 ms of other work
    per_pair = 2 * repeats
    machine.interrupted_calls = {2 + pair * per_pair for pair in range(0, 50, 5)}
    cand, champ = paired_latency_p95(
        candidate, champion, _timing_examples(50), 50, repeats, clock=machine.clock
    )
    assert machine.calls == 2 + 50 * per_pair
    assert cand == pytest.approx(interrupted_p95)
    assert champ == pytest.approx(50.0)


def test_latency_repeats_still_measure_a_model_that_is_slower_on_every_call() -> None:
    machine = _SimulatedMachine()
    slow, champion = _TimedModel(machine, 0.100), _TimedModel(machine, 0.050)
    cand, champ = paired_latency_p95(
        slow, champion, _timing_examples(20), 20, repeats=3, clock=machine.clock
    )
    assert (cand, champ) == (pytest.approx(100.0), pytest.approx(50.0))
    refused = decide(
        _pair_of_benchmarks(0.7, 0.7),
        LatencyComparison(cand, champ),
        GOOD_BEHAVIOUR,
        _settings(min_improvement=-1.0),
    )
    assert any(r.startswith("latency: candidate p95 100.0 ms") for r in refused.reasons)
