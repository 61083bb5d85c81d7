"""Behavioural tests of a trained model (Made-With-ML ``tests/model`` style).

They run the gate's fixed suite (:func:`citeops.tasks.validate.behaviour.behaviour_suite`)
on the model named by ``CITEOPS_BEHAVIOUR_MODEL_URI`` (``models:/claim-verifier@champion``,
``runs:/<id>/model`` or a model folder), resolved with the caller's own settings
(``CITEOPS_HOME``, ``CITEOPS_PROFILE``). Without it they skip: the tiny random model the
other tests use would fail them. Example::

    CITEOPS_BEHAVIOUR_MODEL_URI=models:/claim-verifier@champion pytest tests/model
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from citeops.tasks.validate.behaviour import BehaviourCase, behaviour_suite, run_behaviour_checks

MODEL_URI_ENV = "CITEOPS_BEHAVIOUR_MODEL_URI"
CASES = behaviour_suite()

Predict = Callable[[list[str], list[str]], list[str]]


@pytest.fixture(scope="module")
def predict() -> Predict:
    """The model's ``predict_labels``, loaded once; skips when no model is named.

    Module-scoped, so it reads the environment before the per-test isolation clears the
    ``CITEOPS_*`` variables.
    """
    uri = os.environ.get(MODEL_URI_ENV)
    if not uri:
        pytest.skip(
            f"{MODEL_URI_ENV} is not set: name a trained model (models:/claim-verifier@champion, "
            "runs:/<id>/model or a folder) to run the behavioural tests; the tiny random "
            "test model would fail them"
        )
    from citeops.configs.settings import load_settings
    from citeops.tasks.inference.loading import load_verifier

    return load_verifier(uri, load_settings()).predict_labels


def _cases(kind: str) -> list[BehaviourCase]:
    return [case for case in CASES if case.kind == kind]


@pytest.mark.parametrize("case", _cases("self_support"), ids=lambda c: c.claim[:40])
def test_claim_that_is_its_own_evidence_is_supported(predict: Predict, case: BehaviourCase) -> None:
    """Minimum functionality."""
    assert predict([case.claim], [case.evidence]) == [case.expected]


@pytest.mark.parametrize(
    "case", _cases("whitespace") + _cases("case"), ids=lambda c: f"{c.kind}-{c.claim[:40]}"
)
def test_prediction_is_invariant_to_spacing_and_case(predict: Predict, case: BehaviourCase) -> None:
    """Invariance: the label of the perturbed pair equals the original's."""
    original, perturbed = predict(
        [case.claim, case.variant_claim or ""], [case.evidence, case.variant_evidence or ""]
    )
    assert perturbed == original


def test_suite_share_reaches_the_gate_threshold(predict: Predict) -> None:
    """The share the gate requires (``gate.behaviour_min_pass`` of the default settings)."""
    from citeops.configs.settings import GateSettings

    report = run_behaviour_checks(predict)
    required = GateSettings().behaviour_min_pass
    assert report.share >= required, "\n".join(report.failures)
