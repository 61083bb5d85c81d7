"""The app at /app in a real headless browser (Playwright driving the system Chromium)
against a real uvicorn server with a tiny model: verify a pair, read the label, send
feedback, find its log line (client id, source "app", model version) and its row in the
store after ingest; the rate limit holds and the client can be excluded; a PDF made
with matplotlib goes through the upload path. Saves the screenshot docs/app.png."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from citeops.configs.settings import Settings, load_settings
from citeops.serving.app import create_app
from citeops.serving.ui.service import SOURCE
from tests.integration.serve_support import running_server, save_tiny_model

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "app.png"
BURST = 3  # feedback a client may send at once
CLAIM = "Aspirin use reduces the risk of colorectal cancer."
EVIDENCE = (
    "In a pooled analysis of randomised trials, daily aspirin reduced the 20-year "
    "incidence of colorectal cancer."
)
PDF_SENTENCES = [
    "This report describes a cohort of hospital patients followed for ten years.",
    "Patients completed questionnaires about diet and exercise every year.",
    "Daily aspirin use was associated with fewer colorectal cancers in the cohort.",
    "Funding came from a national research council.",
]


def feedback_lines(root: Path) -> list[dict[str, Any]]:
    """Published feedback lines under the log root."""
    rows = []
    for path in sorted((root / "feedback").rglob("*.jsonl")):
        if not path.name.startswith("."):
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


def wait_for(check, timeout: float = 20.0) -> Any:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def make_pdf(path: Path, sentences: list[str]) -> Path:
    """A one-page PDF of ``sentences`` (matplotlib's PDF backend, real text objects)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.5, 11))
    for i, sentence in enumerate(sentences):
        figure.text(0.05, 0.95 - 0.04 * i, sentence, fontsize=9)
    figure.savefig(path, format="pdf")
    return path


@pytest.fixture
def settings(citeops_env: Path) -> Settings:
    return load_settings(
        home=citeops_env,
        serve={"log_part_max_seconds": 0.3, "precision": "fp32"},
        feedback={"rate_burst": BURST, "rate_per_minute": 0.5},
    )


@pytest.fixture
def page(settings: Settings, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A browser page and the base URL of a running endpoint serving a tiny model."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): the browser test needs it")
    from playwright.sync_api import sync_playwright

    model = save_tiny_model(tmp_path / "model-a")
    app = create_app(settings, str(model))
    with running_server(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900}), base
        finally:
            browser.close()


def verify(page: Any, claim: str, evidence: str | None = None, pdf: Path | None = None) -> str:
    """Fill the form, press Verify, return the answer line once it is shown."""
    page.fill("#claim textarea", claim)
    if evidence is not None:
        page.fill("#evidence textarea", evidence)
    if pdf is not None:
        page.set_input_files("#pdf input[type=file]", str(pdf))
        page.wait_for_selector(f"#pdf >> text={pdf.name}")
    page.click("#verify")
    page.wait_for_selector("#answer >> text=model version", timeout=30_000)
    return page.inner_text("#answer")


def test_app_predicts_takes_feedback_and_it_reaches_the_store(
    page: tuple[Any, str], settings: Settings
) -> None:
    from citeops.tasks.ingest.pipeline import ingest
    from citeops.tasks.store.queries import exclude_client, training_feedback
    from citeops.tasks.store.schema import feedback, feedback_clients, open_store

    browser_page, base = page
    browser_page.goto(base + "/app/")
    answer = verify(browser_page, CLAIM, EVIDENCE)
    label, version = re.search(r"^(\w+) · model version (\S+)", answer).groups()  # type: ignore[union-attr]
    assert label in ("SUPPORT", "NEI", "REFUTE")
    assert label in browser_page.inner_text("#label")  # the Label component's heading
    assert "runtime torch" in answer and "latency" in answer
    request_id = re.search(r"request (\w+)", answer).group(1)  # type: ignore[union-attr]

    browser_page.click("#feedback-support")
    browser_page.wait_for_selector("#feedback-status >> text=recorded")
    browser_page.screenshot(path=str(SCREENSHOT), full_page=True)
    for _ in range(BURST):  # one more than the burst allows
        browser_page.click("#feedback-support")
        time.sleep(0.3)
    browser_page.wait_for_selector("#feedback-status >> text=too many feedback requests")

    root = Path(str(settings.log_root))
    lines = wait_for(lambda: len(feedback_lines(root)) >= BURST and feedback_lines(root))
    assert len(lines) == BURST  # the refused one was not written
    line = lines[0]
    client = line["client_id"]
    assert client.startswith("app-") and line["source"] == SOURCE
    assert (line["request_id"], line["model_version"]) == (request_id, version)
    assert (line["prediction"], line["user_label"]) == (label, "SUPPORT")
    assert {row["client_id"] for row in lines} == {client}

    report = ingest(settings).to_dict()
    assert report["duplicates"] == BURST - 1  # the same pair and label, sent BURST times
    with open_store(settings) as engine, engine.connect() as conn:
        row = conn.execute(select(feedback)).one()
        votes = conn.execute(select(feedback_clients.c.client_id, feedback_clients.c.votes)).all()
    assert (row.request_id, row.model_version, row.claim) == (request_id, version, CLAIM)
    assert votes == [(client, BURST)]
    assert [e.claim for e in training_feedback(settings)] == [CLAIM]
    assert exclude_client(settings, client).lines == BURST
    assert training_feedback(settings) == []  # its only votes came from the excluded client


def test_pdf_upload_retrieves_the_claims_sentences(page: tuple[Any, str], tmp_path: Path) -> None:
    browser_page, base = page
    pdf = make_pdf(tmp_path / "paper.pdf", PDF_SENTENCES)
    browser_page.goto(base + "/app/")
    browser_page.fill("#claim textarea", CLAIM)
    browser_page.fill("#top-k input[type=number]", "1")
    answer = verify(browser_page, CLAIM, pdf=pdf)
    retrieved = browser_page.inner_text("#retrieved")
    assert "Evidence retrieved from the PDF" in retrieved
    assert "Daily aspirin use was associated with fewer colorectal cancers" in retrieved
    assert "Funding came from" not in retrieved  # only the top sentence (k = 1)
    assert "model version" in answer


def next_answer(page: Any, previous: str | None) -> str:
    """Verify the pair again and wait for an answer other than ``previous`` (each answer
    names its own request id)."""
    if previous is None:
        return verify(page, CLAIM, EVIDENCE)
    page.click("#verify")
    answer = wait_for(lambda: (text := page.inner_text("#answer")) != previous and text, 30.0)
    assert answer, "the app gave no new answer within 30 s"
    return answer


def test_a_blue_green_swap_while_the_app_is_in_use_loses_no_request(
    settings: Settings, tmp_path: Path
) -> None:
    """The app answers through the same slots as /predict: a deploy in the middle of a
    user's checks switches the version they see and fails none of them."""
    import threading

    import httpx

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): the browser test needs it")
    from playwright.sync_api import sync_playwright

    token = "app-swap-token"
    first = save_tiny_model(tmp_path / "model-a")
    second = save_tiny_model(tmp_path / "model-b", seed=1)
    with_token = load_settings(
        home=settings.home,
        admin_token=token,
        serve={"log_part_max_seconds": 0.3, "precision": "fp32"},
    )
    app = create_app(with_token, str(first))
    answers: list[str] = []
    with running_server(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.goto(base + "/app/")

            def deploy() -> None:
                time.sleep(1.0)
                headers = {"Authorization": f"Bearer {token}"}
                body = {"model_uri": str(second)}
                response = httpx.post(f"{base}/admin/deploy", json=body, headers=headers,
                                      timeout=120)  # fmt: skip
                deployed.append((response.status_code, response.text[:300]))

            deployed: list[tuple[int, str]] = []
            answers.append(next_answer(page, None))  # on the first model, before the swap
            swap = threading.Thread(target=deploy)
            swap.start()
            deadline = time.monotonic() + 90
            after = 0  # answers asked for once the deploy had returned
            while time.monotonic() < deadline and (after < 3 or len(answers) < 12):
                done = not swap.is_alive()
                answers.append(next_answer(page, answers[-1]))
                after += done
            swap.join(120)
        finally:
            browser.close()
    assert deployed and deployed[0][0] == 200, deployed
    versions = [re.search(r"model version (\S+)", a).group(1) for a in answers]  # type: ignore[union-attr]
    assert len(answers) >= 12  # every check answered: none failed or hung
    assert versions[0] == "model-a" and versions[-1] == "model-b"
    assert versions == sorted(versions)  # one switch, never back
