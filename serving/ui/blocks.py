"""The app's page (Gradio Blocks) and its mounting at ``/app`` on the serving app.

Tabs: **Verify** (claim; evidence typed, or a PDF whose top sentences for the claim are
retrieved; the label, its three probabilities, the model version and runtime that
answered, latency; three feedback buttons; examples; about) and **Monitoring** (usage
per model version from the endpoint's own counters). Gradio is imported here only, when
:func:`mount_app` runs inside the app factory.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.serving.credentials import RateLimited
from citeops.serving.logwriter import LogWriteFailed
from citeops.serving.predictions import Busy, NotReady
from citeops.serving.schemas import BadInput
from citeops.serving.ui.evidence import UnreadablePdf
from citeops.serving.ui.monitoring import HEADERS, summary_markdown, version_rows
from citeops.serving.ui.service import (
    DEFAULT_TOP_K,
    Answer,
    AppService,
    NothingToRate,
    new_client_id,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from citeops.serving.state import ServingState

PATH = "/app"
LABELS = ("SUPPORT", "NEI", "REFUTE")
# A few SciFact-style (claim, evidence) pairs to click.
EXAMPLES = [
    [
        "Aspirin use reduces the risk of colorectal cancer.",
        "In a pooled analysis of randomised trials, daily aspirin reduced the 20-year "
        "incidence of colorectal cancer. The effect was seen after a delay of 8-10 years.",
    ],
    [
        "Vitamin D supplementation prevents fractures in older adults.",
        "In community-dwelling adults over 70, annual high-dose vitamin D did not reduce "
        "fractures; falls and fractures were more frequent in the vitamin D group.",
    ],
    [
        "BRCA1 mutations increase the risk of ovarian cancer.",
        "We sequenced germline DNA of 1,200 patients. Carriers of pathogenic BRCA1 "
        "variants had a cumulative ovarian cancer risk of 44 % by age 80.",
    ],
    [
        "Gut microbiota composition affects response to immunotherapy.",
        "The study enrolled patients with melanoma. Tumour samples were collected before "
        "treatment and sequenced at a central laboratory.",
    ],
]
ABOUT = """\
**citeops** checks whether a cited paper supports a claim: give the claim and the
paper's text (its abstract, say) or upload the paper as a PDF, and the model answers
**SUPPORT**, **NEI** (not enough information) or **REFUTE**, with its probabilities.
With a PDF, the sentences most relevant to the claim are retrieved first (BM25, as the
model's own evidence selection ranks them) and shown.

If the answer is wrong, say which label is right: your feedback is logged with the
model version that answered, checked for quality, and used to retrain the model. You
are anonymous; this browser session has an id of its own, and feedback is rate-limited.

The same model answers the JSON API: see the [API docs](/docs).
"""
USER_ERRORS = (BadInput, NotReady, Busy, UnreadablePdf, RateLimited, LogWriteFailed)


def _details(answer: Answer) -> str:
    return (
        f"**{answer.label}** · model version **{answer.model_version}** · runtime "
        f"{answer.runtime} · slot {answer.slot} ({answer.arm}) · latency "
        f"**{answer.latency_ms:.0f} ms** · "
        f"request `{answer.request_id}`"
    )


def _retrieved(answer: Answer) -> str:
    if not answer.retrieved:
        return ""
    lines = [
        f"{k}. {r.sentence} *(sentence {r.position + 1}, BM25 {r.score:.2f})*"
        for k, r in enumerate(answer.retrieved, 1)
    ]
    return "**Evidence retrieved from the PDF** (in document order):\n\n" + "\n".join(lines)


def build_blocks(state: ServingState) -> Any:
    """The app's Blocks for one serving app's parts (not yet mounted)."""
    import gradio as gr

    service = AppService(state)

    async def verify(
        claim: str, evidence: str, pdf: str | None, top_k: float, client: str | None
    ) -> tuple[Any, ...]:
        client = client or new_client_id()
        try:
            path = Path(pdf) if pdf else None
            answer = await service.verify(claim, evidence, path, int(top_k), client)
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from None
        return answer.probabilities, _details(answer), _retrieved(answer), answer, client, ""

    async def send(label: str, answer: Answer | None, client: str | None) -> tuple[str, str]:
        client = client or new_client_id()
        try:
            feedback_id = await service.feedback(answer, label, client)
        except (NothingToRate, *USER_ERRORS) as error:
            return f"Feedback not sent: {error}", client
        return f"Thanks: feedback **{label}** recorded (id `{feedback_id}`).", client

    def monitoring() -> tuple[str, list[list[str]]]:
        return summary_markdown(state.metrics.registry), version_rows(state.metrics.registry)

    with gr.Blocks(title="citeops: claim verification", analytics_enabled=False) as blocks:
        client = gr.State(None)
        last = gr.State(None)
        gr.Markdown("# citeops: does the cited paper support the claim?")
        with gr.Tab("Verify"):
            with gr.Row():
                with gr.Column():
                    claim = gr.Textbox(label="Claim", lines=2, elem_id="claim")
                    evidence = gr.Textbox(
                        label="Evidence (the cited paper's text, e.g. its abstract)",
                        lines=6,
                        elem_id="evidence",
                    )
                    pdf = gr.File(
                        label="…or the cited paper as a PDF (evidence is retrieved from it)",
                        file_types=[".pdf"],
                        type="filepath",
                        elem_id="pdf",
                    )
                    top_k = gr.Slider(
                        1,
                        10,
                        value=DEFAULT_TOP_K,
                        step=1,
                        label="Sentences to retrieve from the PDF",
                        elem_id="top-k",
                    )
                    submit = gr.Button("Verify", variant="primary", elem_id="verify")
                with gr.Column():
                    probabilities = gr.Label(label="Label", num_top_classes=3, elem_id="label")
                    details = gr.Markdown(elem_id="answer")
                    retrieved = gr.Markdown(elem_id="retrieved")
                    gr.Markdown("**Is the answer right?** Tell us which label is:")
                    with gr.Row():
                        buttons = [
                            gr.Button(f"it is {name}", elem_id=f"feedback-{name.lower()}")
                            for name in LABELS
                        ]
                    status = gr.Markdown(elem_id="feedback-status")
            gr.Examples(EXAMPLES, inputs=[claim, evidence], label="Examples")
            with gr.Accordion("About", open=False):
                gr.Markdown(ABOUT)
        with gr.Tab("Monitoring"):
            summary = gr.Markdown(elem_id="monitoring-summary")
            table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="monitoring-table")
            refresh = gr.Button("Refresh", elem_id="monitoring-refresh")
        blocks.load(new_client_id, outputs=client)
        submit.click(
            verify,
            inputs=[claim, evidence, pdf, top_k, client],
            outputs=[probabilities, details, retrieved, last, client, status],
            concurrency_limit=None,  # the micro-batcher groups concurrent users' pairs
        )
        for name, button in zip(LABELS, buttons, strict=True):
            button.click(
                functools.partial(send, name),
                inputs=[last, client],
                outputs=[status, client],
                concurrency_limit=None,
            )
        refresh.click(monitoring, outputs=[summary, table])
        blocks.load(monitoring, outputs=[summary, table])
    return blocks


def mount_app(app: FastAPI, state: ServingState) -> None:
    """Mount the app at :data:`PATH` on ``app`` (its start-up runs in ``app``'s lifespan).

    Uploads are limited to ``serve.max_body_bytes``, the limit of every request body."""
    import gradio as gr

    gr.mount_gradio_app(
        app,
        build_blocks(state),
        path=PATH,
        footer_links=[],
        run_history=False,
        max_file_size=state.settings.serve.max_body_bytes,
        ssr_mode=False,
    )
