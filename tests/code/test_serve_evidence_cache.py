"""The siamese head's evidence-embedding cache: the same probabilities with it as
without, bounded, never read by another model (a swap), counted in /metrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from citeops.configs.settings import load_settings
from citeops.serving.metrics import build_metrics, refresh_gauges
from citeops.serving.slots import wrap_verifier
from citeops.tasks.inference.cache import EvidenceCache, evidence_digest
from citeops.tasks.inference.loading import load_verifier
from citeops.tasks.inference.predictor import ClaimVerifier

EVIDENCE = "Drug X halved deaths in a randomised trial of 4,000 patients."
CLAIMS = ["Drug X lowers mortality.", "Drug X has no effect on deaths.", "Drug X kills."]


def tiny_siamese(seed: int) -> ClaimVerifier:
    from transformers import AutoTokenizer, BertConfig

    from citeops.tasks.classifier.base import minilm_path
    from citeops.tasks.classifier.siamese import (
        SiameseBertForSequenceClassification,
        siamese_config,
    )

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    base = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(seed)
    config = siamese_config(
        base,
        num_labels=3,
        id2label={0: "SUPPORT", 1: "NEI", 2: "REFUTE"},
        label2id={"SUPPORT": 0, "NEI": 1, "REFUTE": 2},
    )
    model = SiameseBertForSequenceClassification(config)
    return ClaimVerifier(model, tokenizer, max_length=128, labels=("SUPPORT", "NEI", "REFUTE"))


def score(verifier: ClaimVerifier, claims: list[str], evidence: str = EVIDENCE) -> np.ndarray:
    return np.stack(
        [verifier.predict_encoded([verifier.encode_pair(c, evidence)])[0] for c in claims]
    )


def test_the_same_pair_gets_identical_probabilities_with_and_without_the_cache() -> None:
    plain = tiny_siamese(seed=1)
    expected = score(plain, CLAIMS)
    cached = tiny_siamese(seed=1)
    cached.evidence_cache = EvidenceCache(1 << 20)
    first = score(cached, CLAIMS)  # one miss, then hits
    again = score(cached, CLAIMS)  # hits only
    assert np.array_equal(first, expected) and np.array_equal(again, expected)
    stats = cached.evidence_cache.stats()
    assert (stats.misses, stats.hits, stats.entries) == (1, 2 * len(CLAIMS) - 1, 1)
    # the claim side still decides: three claims, three different answers
    assert len({tuple(np.round(row, 6)) for row in expected}) == len(CLAIMS)


def test_a_batch_with_a_repeated_evidence_matches_each_pair_scored_alone() -> None:
    verifier = tiny_siamese(seed=2)
    alone = score(verifier, CLAIMS)
    batch = verifier.predict_encoded([verifier.encode_pair(c, EVIDENCE) for c in CLAIMS])
    assert np.abs(batch - alone).max() < 1e-5


def test_the_cache_never_grows_past_its_bound() -> None:
    vector = np.ones(32, dtype=np.float32)
    bound = 5 * EvidenceCache.entry_bytes(vector)
    cache = EvidenceCache(bound)
    verifier = tiny_siamese(seed=3)
    verifier.evidence_cache = cache
    for i in range(40):
        verifier.predict_encoded([verifier.encode_pair("A claim.", f"Evidence number {i}.")])
        stats = cache.stats()
        assert stats.bytes <= bound and stats.entries <= 5
    assert cache.stats().evictions == 35
    # least recently used out first: the newest evidence is still there
    newest = verifier.encode_pair("A claim.", "Evidence number 39.")
    evidence = newest[: newest.index(verifier.tokenizer.sep_token_id) + 1]
    assert cache.get(verifier.cache_namespace, evidence_digest(evidence)) is not None
    # an entry larger than the whole bound is not kept
    tiny = EvidenceCache(64)
    tiny.put("m", b"key", vector)
    assert len(tiny) == 0 and tiny.stats().bytes == 0


def test_a_swapped_in_model_never_reads_the_embeddings_of_the_one_before() -> None:
    shared = EvidenceCache(1 << 20)
    old, new = tiny_siamese(seed=4), tiny_siamese(seed=5)
    expected_new = score(tiny_siamese(seed=5), CLAIMS)
    old.evidence_cache = new.evidence_cache = shared  # the worst case: one cache for both
    old_probs = score(old, CLAIMS)
    assert np.array_equal(score(new, CLAIMS), expected_new)
    assert not np.allclose(old_probs, expected_new, atol=1e-4)
    # the same version loaded again is another namespace too
    assert tiny_siamese(seed=4).cache_namespace != old.cache_namespace
    assert shared.drop(old.cache_namespace) == 1 and len(shared) == 1


def test_each_loaded_siamese_model_gets_its_own_cache_of_the_configured_size(
    tmp_path: Path,
) -> None:
    verifier = tiny_siamese(seed=6)
    verifier.model.save_pretrained(tmp_path)
    verifier.tokenizer.save_pretrained(tmp_path)
    settings = load_settings(serve={"runtime": "torch", "evidence_cache_mb": 2})
    first = load_verifier(str(tmp_path), settings, runtime="torch")
    second = load_verifier(str(tmp_path), settings, runtime="torch")
    assert first.evidence_cache is not None and first.evidence_cache is not second.evidence_cache
    assert first.evidence_cache.max_bytes == 2 * 1024 * 1024
    off = load_settings(serve={"runtime": "torch", "evidence_cache_mb": 0})
    assert load_verifier(str(tmp_path), off, runtime="torch").evidence_cache is None


def test_metrics_report_each_slots_cache() -> None:
    verifier = tiny_siamese(seed=7)
    verifier.evidence_cache = EvidenceCache(1 << 20)
    score(verifier, CLAIMS)
    model = wrap_verifier(verifier, "models:/claim-verifier/3")
    slots = SimpleNamespace(live=("blue", model), models={"blue": model, "green": None})
    stats = SimpleNamespace(lines={}, dropped=0)
    metrics = build_metrics()
    refresh_gauges(metrics, slots, stats, 0)  # type: ignore[arg-type]
    text = metrics.render()[0].decode()
    assert 'citeops_evidence_cache{slot="blue",stat="hits"} 2.0' in text
    assert 'citeops_evidence_cache{slot="blue",stat="misses"} 1.0' in text
    assert 'citeops_evidence_cache{slot="blue",stat="entries"} 1.0' in text


@pytest.mark.parametrize("bound", [0, -1])
def test_a_cache_needs_a_positive_bound(bound: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        EvidenceCache(bound)
