"""The flagging measurement (`citeops bench flagging`) and the demo's feedback sizing: the
benchmark flips labels exactly as the demo's users do, reads back the file it writes, and
judges every rule on the same probabilities; the demo sends enough users for the trigger
to fire in one round once flagged labels leave the count."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from citeops.benchmarks.feedback_flagging import (
    ScoredPair,
    compare_rules,
    demo_labels,
    read_flagging_file,
    scored_pairs,
    write_flagging_file,
)
from citeops.flows.demo import feedback_round_size, user_label
from citeops.tasks.data.multivers import LABELS, Example
from citeops.tasks.feedback.confident import RULES
from tests.feedback_support import KeywordScorer, keyword_pair


def examples(n: int) -> list[Example]:
    found = []
    for i in range(n):
        claim, evidence = keyword_pair(i, LABELS[i % 3])
        found.append(Example(claim=claim, evidence=evidence, label=i % 3, dataset="citint"))
    return found


def test_the_benchmark_flips_labels_as_the_demo_users_do() -> None:
    pairs = examples(300)
    demo = []
    for start in (0, 120, 240):  # the demo's rounds: a generator per round
        rng = random.Random(f"7-{start}")
        demo += [user_label(ex, rng, 0.15) for ex in pairs[start : start + 120]]
    labels = demo_labels([ex.label_name for ex in pairs], 0.15, 7, 120)
    assert labels == demo
    flips = sum(a != ex.label_name for a, ex in zip(labels, pairs, strict=True))
    assert 25 <= flips <= 65  # about 15 % of 300


def test_a_flagging_file_round_trips_and_a_right_model_flags_exactly_the_flips(
    tmp_path: Path,
) -> None:
    scored = scored_pairs(KeywordScorer(), examples(150), 0.2)
    path = tmp_path / "flags.jsonl"
    write_flagging_file(path, scored)
    back = read_flagging_file(path)
    assert [(p.gold, p.given) for p in back] == [(p.gold, p.given) for p in scored]
    assert back[0].probs == pytest.approx(scored[0].probs)
    result = compare_rules(back, 120, 0.2, resamples=5)
    flips = sum(p.flipped for p in back[:120])
    assert result["pairs"] == 120 and result["flips"] == flips > 0
    for rule in RULES:  # a confident, right model: the flips and nothing else
        entry = result["rules"][rule]
        assert entry["file"]["caught"] == entry["file"]["flagged"] == flips
        assert entry["resampled"]["precision"] == 1.0 and entry["resampled"]["met"] == 5
        # the posterior may leave a flip of a direction the noise matrix finds rare
        assert entry["resampled"]["recall"] >= (0.9 if rule == "posterior" else 1.0)


def test_a_malformed_flagging_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = ScoredPair("c", "e", "NEI", "NEI", dict.fromkeys(LABELS, 1 / 3)).to_json()
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_flagging_file(path)


def test_one_round_of_users_clears_the_trigger_after_flagging() -> None:
    # 2026-12-04: 120 users, 15 % flipped, 23 % of labels flagged: 96 trusted, a second round
    size = feedback_round_size(100, 0.15)
    assert size == 143 and size * (1 - 0.23) >= 100
    assert size * (1 - 2 * 0.15) >= 100  # precision 0.5 at recall 1: twice the flips flagged
    assert feedback_round_size(4, 0.15) == 6 and feedback_round_size(100, 0.0) == 100
    assert feedback_round_size(100, 0.4) == 200  # at most twice the need


def test_bench_flagging_runs_with_its_defaults_on_a_fresh_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No flagging file, no model, no champion: the benchmark scores with the serve
    benchmark's default model and still judges every rule side by side."""
    from tests.harness import run_citeops

    monkeypatch.chdir(tmp_path)
    argv = ["bench", "flagging", "--pool", "40", "--pairs", "20", "--resamples", "2", "--json"]
    code, out, err = run_citeops(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert "no champion in this home" in err
    assert (tmp_path / "flagging.jsonl").is_file()
    assert len(read_flagging_file(tmp_path / "flagging.jsonl")) == 40
    assert result["resamples"] == 2
    assert set(RULES) <= set(json.dumps(result).split('"'))
