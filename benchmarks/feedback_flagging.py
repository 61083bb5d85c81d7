"""Flagging of wrong feedback labels, measured offline: each confident-learning rule's
precision and recall on labels flipped the way the demo's users flip them.

A *flagging file* (JSONL, one line per pair) holds Citation-Integrity pairs in the demo's
order (its users' seeded shuffle), their gold label, the label a demo user sends (a
seeded share flipped, in rounds as the demo sends them: ``flipped`` says which) and a
trained model's probabilities (``probs``: {label: p}). It is made once with a model
(:func:`scored_pairs`, minutes on a CPU for MiniLM) and then judged in seconds by every
rule side by side (:func:`compare_rules`), so the rules meet the same probabilities.

- **file**: the first ``pairs`` lines with the labels the file gives: the demo's own
  users (seed 7, rounds of 120: the 239 rows the 2026-12-04 ``make run`` flagged);
- **resamples**: the flags of a rule move a lot between draws of a few hundred rows, so
  the same probabilities are judged again on ``resamples`` other draws (a seeded
  ``pairs`` of the file's lines, their gold labels flipped afresh); reported pooled
  (flips caught / labels flagged over all draws) and as the range of the draws.

The demo's pairs come from the train split its champion trained on (in-sample, as in the
demo); ``--split dev`` gives an out-of-sample figure.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from citeops.tasks.data.multivers import LABEL2ID, LABELS
from citeops.tasks.feedback.confident import RULES, find_label_issues
from citeops.tasks.feedback.measure import FlagMeasure, flip_label, tally

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.data.multivers import Example
    from citeops.tasks.feedback.quality import Scorer

DEMO_SEED = 7
DEMO_ROUND = 120  # the demo's users per feedback round until 2026-12-04
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScoredPair:
    """One line of a flagging file."""

    claim: str
    evidence: str
    gold: str
    given: str
    probs: dict[str, float]

    @property
    def flipped(self) -> bool:
        return self.given != self.gold

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "evidence": self.evidence,
            "gold": self.gold,
            "given": self.given,
            "flipped": self.flipped,
            "probs": {k: round(float(v), 6) for k, v in self.probs.items()},
        }


def demo_labels(golds: Sequence[str], share: float, seed: int, round_size: int) -> list[str]:
    """The labels the demo's users send for pairs in its order: each round of
    ``round_size`` users draws from its own generator, seeded as ``flows/demo.py`` seeds
    it (``"<seed>-<first pair of the round>"``)."""
    labels: list[str] = []
    for start in range(0, len(golds), round_size):
        rng = random.Random(f"{seed}-{start}")
        labels += [flip_label(gold, rng, share) for gold in golds[start : start + round_size]]
    return labels


def scored_pairs(
    scorer: Scorer,
    examples: Sequence[Example],
    share: float,
    seed: int = DEMO_SEED,
    round_size: int = DEMO_ROUND,
) -> list[ScoredPair]:
    """``examples`` (in the demo's order) scored by ``scorer``, with the demo users'
    labels."""
    probs = scorer([ex.claim for ex in examples], [ex.evidence for ex in examples])
    given = demo_labels([ex.label_name for ex in examples], share, seed, round_size)
    return [
        ScoredPair(ex.claim, ex.evidence, ex.label_name, label, dict(zip(LABELS, p, strict=True)))
        for ex, label, p in zip(examples, given, probs, strict=True)
    ]


def write_flagging_file(path: Path, pairs: Sequence[ScoredPair]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(p.to_json()) + b"\n" for p in pairs))


def read_flagging_file(path: Path) -> list[ScoredPair]:
    """The lines of a flagging file.

    Raises:
        ValueError: a line is not a flagging-file line (the message names it).
    """
    pairs = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            probs = {label: float(row["probs"][label]) for label in LABELS}
            pairs.append(
                ScoredPair(row["claim"], row["evidence"], row["gold"], row["given"], probs)
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a flagging-file line ({error})") from None
        if row["gold"] not in LABELS or row["given"] not in LABELS:
            raise ValueError(f"{path}:{number}: labels must be among {', '.join(LABELS)}")
    return pairs


def judge_rules(
    probs: np.ndarray, given: Sequence[str], flipped: Sequence[bool], rules: Sequence[str]
) -> dict[str, FlagMeasure]:
    """Each rule's :class:`FlagMeasure` on one set of labels."""
    ids = np.array([LABEL2ID[label] for label in given], dtype=np.int64)
    found: dict[str, FlagMeasure] = {}
    for rule in rules:
        issues = set(find_label_issues(probs, ids, rule).tolist())  # type: ignore[arg-type]
        found[rule] = tally((flip, i in issues) for i, flip in enumerate(flipped))
    return found


def compare_rules(
    pairs: Sequence[ScoredPair],
    size: int,
    share: float,
    resamples: int,
    rules: Sequence[str] = RULES,
) -> dict[str, Any]:
    """Every rule on the file's first ``size`` labels, and pooled over ``resamples`` draws
    of ``size`` lines with fresh flips (seeds 1..resamples)."""
    head = list(pairs[:size])
    probs_of = lambda items: np.array([[p.probs[k] for k in LABELS] for p in items])  # noqa: E731
    on_file = judge_rules(probs_of(head), [p.given for p in head], [p.flipped for p in head], rules)
    draws: dict[str, list[FlagMeasure]] = {rule: [] for rule in rules}
    for seed in range(1, resamples + 1):
        drawn = random.Random(seed).sample(list(pairs), min(size, len(pairs)))
        rng = random.Random(f"{seed}-flips")
        given = [flip_label(p.gold, rng, share) for p in drawn]
        flipped = [g != p.gold for g, p in zip(given, drawn, strict=True)]
        for rule, measure in judge_rules(probs_of(drawn), given, flipped, rules).items():
            draws[rule].append(measure)
    return {
        "pairs": len(head),
        "flips": on_file[rules[0]].flips if rules else 0,
        "resamples": resamples,
        "rules": {
            rule: {"file": on_file[rule].to_dict(), "resampled": _pooled(draws[rule])}
            for rule in rules
        },
    }


def _pooled(measures: Sequence[FlagMeasure]) -> dict[str, Any]:
    if not measures:
        return {}
    total = FlagMeasure(0, 0, 0, 0, 0)
    for m in measures:
        total.items += m.items
        total.flips += m.flips
        total.flagged += m.flagged
        total.caught += m.caught
        total.correct_flagged += m.correct_flagged
    spread = lambda values: [min(values), max(values)] if values else None  # noqa: E731
    precisions = [m.precision for m in measures if m.precision is not None]
    recalls = [m.recall for m in measures if m.recall is not None]
    return total.to_dict() | {
        "precision_range": spread(precisions),
        "recall_range": spread(recalls),
        "met": sum(
            (m.precision or 0) >= 0.7 and (m.recall or 0) >= 0.5 for m in measures
        ),  # draws meeting issue 25's goal
    }


def comparison_text(result: dict[str, Any]) -> str:
    """The rules side by side, one line each."""
    show = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"{result['pairs']} labels, {result['flips']} flipped; "
        f"{result['resamples']} resamples pooled (goal precision >= 0.70 at recall >= 0.50)",
        f"{'rule':22s} {'flagged':>7s} {'caught':>6s} {'correct':>7s} {'prec':>5s} {'recall':>6s}"
        f"   {'pooled prec':>11s} {'recall':>6s} {'met':>7s}",
    ]
    for rule, entry in result["rules"].items():
        f, r = entry["file"], entry["resampled"]
        lines.append(
            f"{rule:22s} {f['flagged']:>7d} {f['caught']:>6d} {f['correct_flagged']:>7d} "
            f"{show(f['precision']):>5s} {show(f['recall']):>6s}   "
            f"{show(r.get('precision')):>11s} {show(r.get('recall')):>6s} "
            f"{str(r.get('met', '-')) + '/' + str(result['resamples']):>7s}"
        )
    return "\n".join(lines)


def default_flagging_model(settings: Settings, progress: Progress) -> str:
    """What scores the pairs when neither a flagging file nor a model is given: the
    champion of this home, else the serve benchmark's default model (MiniLM with an
    untrained head: the rules then run, but the figures say nothing of a real champion)."""
    from citeops.benchmarks.serve import bench_model_folder
    from citeops.tasks.inference.aliases import CHAMPION, alias_uri
    from citeops.tasks.registry.register import get_version_by_alias

    if get_version_by_alias(settings, CHAMPION) is not None:
        return alias_uri(settings, CHAMPION)
    progress("no champion in this home: scoring with MiniLM and an untrained head")
    return str(bench_model_folder(settings, None))


def run_flagging_bench(
    settings: Settings,
    file: Path,
    model_uri: str | None,
    split: str,
    pool: int | None,
    pairs: int,
    share: float,
    resamples: int,
    progress: Progress,
) -> dict[str, Any]:
    """With ``model_uri``: score the first ``pool`` pairs of the Citation-Integrity
    ``split`` in the demo's order (all when None) with that model and write the flagging
    ``file``; else read ``file``, or, when there is none, score with
    :func:`default_flagging_model` first. Then every rule side by side (:func:`compare_rules`).

    Raises:
        ValueError: the file is missing or malformed, or holds fewer than 10 lines.
    """
    if model_uri is None and not file.is_file():
        model_uri = default_flagging_model(settings, progress)
    if model_uri is not None:
        from citeops.tasks.data.multivers import read_split, shuffled
        from citeops.tasks.feedback.quality import ChampionScorer
        from citeops.tasks.inference.loading import load_verifier

        examples = shuffled(read_split(settings.data_dir, "citint", split), DEMO_SEED)[:pool]
        progress(f"scoring {len(examples)} citint {split} pairs with {model_uri}")
        verifier = load_verifier(model_uri, settings)
        scorer = ChampionScorer(verifier, verifier.model_version or model_uri)
        write_flagging_file(file, scored_pairs(scorer, examples, share))
        progress(f"flagging file: {file}")
    if not file.is_file():
        raise ValueError(f"{file}: no flagging file; make one with --model-uri")
    found = read_flagging_file(file)
    if len(found) < 10:
        raise ValueError(f"{file}: {len(found)} lines; at least 10 are needed")
    return compare_rules(found, pairs, share, resamples) | {"file": str(file)}
