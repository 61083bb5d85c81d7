"""`citeops data ...`: dataset statistics and the checksummed download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citeops.flows.cli.common import info, print_json, settings_from

app = typer.Typer(help="Benchmark datasets (SciFact, Citation-Integrity).", no_args_is_help=True)


@app.command("stats")
def stats(
    data_dir: Annotated[
        Path | None, typer.Option(help="Dataset folder (CITEOPS_DATA_DIR).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Examples and label counts for every dataset and split found."""
    from citeops.tasks.data.multivers import dataset_stats
    from citeops.tasks.errors import DataFileError

    settings = settings_from(data_dir=data_dir)
    stats_ = dataset_stats(settings.data_dir)
    if not stats_:
        raise DataFileError(
            f"{settings.data_dir}: no datasets found; run `citeops data fetch` first"
        )
    if as_json:
        print_json(stats_)
        return
    for dataset, splits in stats_.items():
        for split, row in splits.items():
            labels = "  ".join(f"{k}={v}" for k, v in row["labels"].items())
            typer.echo(f"{dataset:10s} {split:6s} {row['examples']:6d}  {labels}")


@app.command("fetch")
def fetch(
    dest: Annotated[
        Path | None, typer.Option(help="Where to put the files (default: data dir).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Source URL prefix (file:// works too).")
    ] = None,
) -> None:
    """Download SciFact and Citation-Integrity and verify their SHA-256 sums."""
    from citeops.tasks.data.fetch import fetch_datasets

    settings = settings_from(data_base_url=base_url)
    target = (dest or settings.data_dir).expanduser().resolve()

    def report(name: str, result) -> None:  # noqa: ANN001
        info(f"{'fetched' if result.downloaded else 'ok     '} {name}")

    results = fetch_datasets(settings.data_base_url, target, progress=report)
    info(f"{len(results)} files verified in {target}")
