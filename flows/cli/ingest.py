"""`citeops ingest`, `citeops feedback stats|score|clients|exclude|include`."""

from __future__ import annotations

import typer

from citeops.flows.cli.common import info, print_json, settings_from, stage_progress

feedback_app = typer.Typer(help="The curated feedback store.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ingest commands to the root app."""
    app.command("ingest")(ingest)
    app.add_typer(feedback_app, name="feedback")


def ingest(
    source: str | None = typer.Option(
        None,
        "--source",
        help="Log root: a folder, a .jsonl file or s3://bucket/prefix (default: CITEOPS_LOG_ROOT).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only the report JSON."),
) -> None:
    """Ingest new feedback and query logs: validate, dedupe, quarantine, store."""
    from citeops.tasks.ingest.pipeline import ingest as run_ingest
    from citeops.tasks.ingest.report import SKIPPED_KEY
    from citeops.tasks.store.schema import StoreUnreachable

    try:
        with stage_progress(name="citeops.tasks.ingest", fmt="%(message)s"):
            report = run_ingest(settings_from(), source)
    except StoreUnreachable as error:  # each object commits whole: the rerun is exact
        raise StoreUnreachable(
            f"{error}; nothing was half-written, rerun the same command"
        ) from None
    for change in report.changed:
        info(
            f"warning: {change.uri} changed after it was ingested "
            f"(size {change.ingested_size} -> {change.size}); not re-read"
        )
    payload = report.to_dict()
    if as_json:
        print_json(payload)
        return
    info(f"ingested {report.source} in {report.seconds:.1f} s")
    for key, value in payload.items():
        if key == "reasons":
            for reason, count in value.items():
                typer.echo(f"  quarantined: {reason:18s} {count:>10,}")
        elif key == SKIPPED_KEY:
            typer.echo(f"{key:34s} {len(value):>10,}")  # each one was logged as a warning
        else:
            typer.echo(f"{key:34s} {value:>10,}")


@feedback_app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Summarise the curated store: feedback, conflicts, leaks, quarantine, objects, and
    feedback lines by model version and by client (label mix, agreement with the model)."""
    from citeops.tasks.store.feedback_stats import feedback_breakdown
    from citeops.tasks.store.queries import feedback_stats

    settings = settings_from()
    summary = {**feedback_stats(settings), **feedback_breakdown(settings)}
    if as_json:
        print_json(summary)
        return
    fb, objects = summary["feedback"], summary["objects"]
    labels = "  ".join(f"{k}={v:,}" for k, v in fb["labels"].items())
    typer.echo(f"store          {summary['store']}")
    typer.echo(f"feedback       {fb['rows']:,} rows ({labels}), {fb['votes']:,} votes")
    typer.echo(
        f"               usable {fb['usable']:,}, conflicts {fb['conflict_rows']:,} rows in "
        f"{fb['conflict_pairs']:,} pairs, leaked {fb['leaked_rows']:,}"
    )
    typer.echo(f"queries        {summary['queries']['rows']:,} rows")
    reasons = ", ".join(f"{k} {v:,}" for k, v in summary["quarantine"]["reasons"].items())
    typer.echo(f"quarantine     {summary['quarantine']['rows']:,} lines ({reasons or 'none'})")
    typer.echo(
        f"objects        {objects['ingested']:,} ingested, {objects['lines']:,} lines, "
        f"{len(objects['changed_after_ingest'])} changed after ingestion"
    )
    typer.echo(
        f"validation     {summary['validation']['batches']:,} batches, "
        f"{summary['validation']['failed_batches']:,} with unexpected rows"
    )
    typer.echo(f"last ingest    {summary['last_ingest'] or 'never'}")
    typer.echo(f"last training  {summary['last_training'] or 'never'}")
    typer.echo(f"new since last training  {summary['new_feedback_since_last_training']:,}")
    _trigger_counts(summary["trigger_counts"], fb["flagged_rows"], fb["unscored_rows"])
    _breakdown_table("model version", summary["by_model_version"], "model_version")
    _breakdown_table("client", summary["by_client"], "client_id")


BREAKDOWN_ROWS = 20  # rows of each breakdown table (--json has them all)
COUNT_STEPS = ("accepted", "unflagged", "authenticated", "from_non_excluded_clients", "trusted")


def _trigger_counts(counts: dict, flagged: int, unscored: int) -> None:
    """The trigger's count step by step, over all feedback and since the last training."""
    typer.echo(f"\ntrigger count ({flagged:,} rows flagged, {unscored:,} not scored by a model)")
    typer.echo(f"   {'':28s} {'all':>10s} {'since training':>15s}")
    for step in COUNT_STEPS:
        name = step.replace("_", " ")
        total, recent = counts["all"][step], counts["since_last_training"][step]
        typer.echo(f"   {name:28s} {total:>10,} {recent:>15,}")


def _breakdown_table(title: str, entries: list[dict], key: str) -> None:
    """Lines, label mix and agreement per ``key`` (the busiest first)."""
    typer.echo(f"\nby {title:22s} {'lines':>8s} {'SUPPORT':>8s} {'NEI':>8s} {'REFUTE':>8s}  agree")
    for entry in entries[:BREAKDOWN_ROWS]:
        name = "(none)" if entry[key] is None else str(entry[key])[:30]
        name += " (excluded)" if entry.get("excluded") else ""
        mix = " ".join(f"{entry['labels'].get(k, 0):>8,}" for k in ("SUPPORT", "NEI", "REFUTE"))
        rate = entry["agreement"]
        agree = "-" if rate is None else f"{rate:.1%} of {entry['judged']:,}"
        typer.echo(f"   {name:22s} {entry['lines']:>8,} {mix}  {agree}")
    if len(entries) > BREAKDOWN_ROWS:
        typer.echo(f"   ... {len(entries) - BREAKDOWN_ROWS:,} more (--json lists them all)")


@feedback_app.command("exclude")
def exclude(
    client: str = typer.Option(..., "--client", help="Client id whose feedback lines to exclude."),
    note: str | None = typer.Option(None, "--note", help="Why (kept with the exclusion)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exclude one client's feedback lines (a poisoning client): training and the retraining
    trigger ignore them, now and for lines ingested later."""
    from citeops.tasks.store.queries import exclude_client

    done = exclude_client(settings_from(), client, note)
    if as_json:
        print_json(done.to_dict())
        return
    again = " (it was excluded already)" if done.already_excluded else ""
    typer.echo(
        f"excluded {done.lines:,} feedback lines of client {done.client_id!r}{again}: "
        f"{done.rows:,} feedback rows, {done.rows_unused:,} of them no longer used"
    )


@feedback_app.command("include")
def include(
    client: str = typer.Option(..., "--client", help="Excluded client id to let back in."),
) -> None:
    """Let an excluded client back in (undo `citeops feedback exclude` or an automatic
    exclusion): its lines count again, and the quality stage never excludes it again."""
    from citeops.tasks.store.feedback_quality import readmit_client

    if readmit_client(settings_from(), client):
        typer.echo(f"client {client.strip()!r} is no longer excluded")
    else:
        typer.echo(f"client {client.strip()!r} was not excluded; nothing changed")


@feedback_app.command("score")
def score(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Score new feedback with the champion, flag likely wrong labels (confident learning,
    disagreement between clients), judge clients and exclude suspect ones
    (feedback.auto_exclude). Flagged feedback is kept but not trained on or counted."""
    from citeops.tasks.feedback.quality import score_feedback

    with stage_progress(name="citeops.tasks.feedback", fmt="%(message)s"):
        report = score_feedback(settings_from())
    if as_json:
        print_json(report.to_dict())
        return
    reasons = ", ".join(f"{k} {v:,}" for k, v in report.reasons.items()) or "none"
    typer.echo(f"scored         {report.scored:,} rows by model {report.model_version or '-'}")
    if report.note or report.unscored:
        typer.echo(f"               {report.unscored:,} not scored yet {report.note or ''}")
    typer.echo(f"flagged        {report.flagged:,} of {report.rows:,} rows ({reasons})")
    _clients_table([c.to_dict() for c in report.clients])
    for client_id in report.auto_excluded:
        typer.echo(f"excluded       {client_id} (undo: citeops feedback include --client ...)")


@feedback_app.command("clients")
def clients(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per authenticated client: lines, share flagged, agreement with the model's confident
    predictions and with other clients; suspect and excluded clients marked (from the
    stored scores and flags: run `citeops feedback score` first)."""
    from citeops.tasks.feedback.quality import stored_client_quality

    found = [c.to_dict() for c in stored_client_quality(settings_from())]
    if as_json:
        print_json({"clients": found, "suspect": [c["client_id"] for c in found if c["suspect"]]})
        return
    _clients_table(found)


def _clients_table(entries: list[dict]) -> None:
    """One line per client, suspect ones marked (the busiest first)."""
    rate = lambda value: "-" if value is None else f"{value:.1%}"  # noqa: E731
    typer.echo(f"\n{'client':28s} {'lines':>8s} {'flagged':>8s} {'model':>8s} {'peers':>8s}")
    for entry in entries[:BREAKDOWN_ROWS]:
        mark = " (excluded)" if entry["excluded"] else " (suspect)" if entry["suspect"] else ""
        typer.echo(
            f"{str(entry['client_id'])[:28]:28s} {entry['lines']:>8,} "
            f"{entry['flagged_share']:>8.1%} {rate(entry['model_agreement']):>8s} "
            f"{rate(entry['peer_agreement']):>8s}{mark}"
        )
    if len(entries) > BREAKDOWN_ROWS:
        typer.echo(f"... {len(entries) - BREAKDOWN_ROWS:,} more (--json lists them all)")


@feedback_app.command("measure")
def measure(
    split: str = typer.Option("dev", "--split", help="Citation-Integrity split the users send."),
    pairs: int = typer.Option(600, "--pairs", min=1, help="Pairs to judge (seeded order)."),
    flip_share: float = typer.Option(0.15, "--flip-share", min=0.0, max=1.0),
    seed: int = typer.Option(7, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Precision and recall of the label-issue flagging on seeded flips: the demo's noisy
    users (a seeded share of gold labels flipped) scored by the champion. Use a split the
    champion did not train on (dev or test) for an out-of-sample figure."""
    from citeops.tasks.data.multivers import read_split, shuffled
    from citeops.tasks.errors import CiteopsError
    from citeops.tasks.feedback.measure import measure_on_seeded_flips
    from citeops.tasks.feedback.quality import champion_scorer

    settings = settings_from()
    scorer = champion_scorer(settings)
    if scorer is None:
        raise CiteopsError("no champion to score with: train and promote one first")
    examples = shuffled(read_split(settings.data_dir, "citint", split), seed)[:pairs]
    rule = settings.feedback.flag_rule
    min_wrong = settings.feedback.flag_min_wrong
    result = measure_on_seeded_flips(scorer, examples, flip_share, seed, rule, min_wrong)
    payload = result.to_dict() | {"model_version": scorer.version, "split": split, "rule": rule}
    if as_json:
        print_json(payload)
        return
    typer.echo(
        f"champion v{scorer.version} on {result.items} citint {split} pairs ({rule}): "
        f"{result.line()}"
    )
