"""`citeops bench …`: the benchmarks (package ``citeops.benchmarks``), each beside its baseline.

Commands: ``train``, ``serve``, ``ingest``, ``drift``, ``drift-calibration``, ``flagging``.
Each prints a human-readable summary, or with ``--json`` the benchmark's figures as JSON on
stdout (progress goes to stderr).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from citeops.benchmarks.settings import load_bench_settings
from citeops.flows.cli.common import info, print_json, settings_from

EVIDENTLY_PYTHON_ENV = "CITEOPS_EVIDENTLY_PYTHON"

app = typer.Typer(help="Benchmarks that print figures side by side with a baseline.")


def _names(value: str | None) -> list[str] | None:
    """A comma-separated option as a list (``None`` when not given or empty)."""
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


@app.command("train")
def bench_train_command(
    base_model: str | None = typer.Option(None, help="minilm | tiny | HF id or local folder."),
    steps: int = typer.Option(4, min=1, help="Optimiser steps on each side (samples/s)."),
    batch_size: int = typer.Option(16, min=1, help="Pairs per step."),
    max_length: int = typer.Option(512, min=16, help="Token limit (the baseline pads to it)."),
    eval_examples: int = typer.Option(64, min=1, help="Dev pairs scored for macro F1."),
    with_fp32: bool = typer.Option(False, "--with-fp32", help="Also time ours without bf16."),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Also profile one forward + backward per side: share of operator time in "
        "attention, linear layers, embeddings, other.",
    ),
    time_to_f1: bool = typer.Option(
        True, "--time-to-f1/--no-time-to-f1", help="Also race both sides to the dev F1 target."
    ),
    target_f1: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Dev macro F1 to reach (bench.train_target_f1, 0.40)."
    ),
    budget_seconds: float | None = typer.Option(
        None, min=0.001, help="Training seconds per side (bench.train_budget_seconds, 900)."
    ),
    eval_every: int | None = typer.Option(
        None, min=1, help="Optimiser steps between dev scorings (bench.train_eval_every, 10)."
    ),
    dev_examples: int | None = typer.Option(
        None, min=1, help="Dev pairs scored (bench.train_dev_examples, 150)."
    ),
    train_examples: int | None = typer.Option(
        None, min=1, help="Training pairs of the race (bench.train_quality_examples; all)."
    ),
    quality_dataset: str | None = typer.Option(
        None, help="Dataset of the race (bench.train_quality_dataset, scifact)."
    ),
    ours_max_length: int | None = typer.Option(
        None, min=16, help="Our training length in the race (train.max_length)."
    ),
    baseline_lr: float | None = typer.Option(
        None,
        min=0.0,
        help="Baseline learning rate (bench.train_baseline_learning_rate; default: "
        "train.learning_rate; pyvers' own is 2e-5).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Training: samples/s of a pad-to-512 pyvers-style loop vs ours (the default recipe:
    its head, length and evidence selection, bucketed, bf16), each step split into fetch /
    forward / backward / optimizer, then the training time each needs to reach the same dev
    macro F1 (time to quality)."""
    from citeops.benchmarks.train import bench_train

    settings = settings_from(
        model={"base_model": base_model}, train={"max_length": ours_max_length}
    )
    bench = load_bench_settings(
        train_target_f1=target_f1,
        train_budget_seconds=budget_seconds,
        train_eval_every=eval_every,
        train_dev_examples=dev_examples,
        train_quality_examples=train_examples,
        train_quality_dataset=quality_dataset,
        train_baseline_learning_rate=baseline_lr,
    )
    figures = bench_train(
        settings,
        steps,
        batch_size,
        max_length,
        eval_examples,
        with_fp32=with_fp32,
        progress=info,
        time_to_f1=time_to_f1,
        bench=bench,
        profile=profile,
    )
    if as_json:
        print_json(figures)
        return
    typer.echo(
        f"{figures['base_model']}, {figures['dataset']}, batch {batch_size}, "
        f"{steps} steps, max_length {max_length}, {figures['threads']} threads"
    )
    for name in ("baseline", "ours_same_length", "ours_fp32", "ours"):
        if name in figures:
            typer.echo(format_train_side(name, figures[name]))
    typer.echo(
        f"ratio {figures['ratio']:.2f}x  (same model and length: "
        f"{figures['ratio_same_length']:.2f}x; F1 difference {figures['f1_diff']:+.3f})"
    )
    if time_to_f1:
        from citeops.benchmarks.time_to_f1 import format_time_to_f1

        typer.echo(format_time_to_f1(figures))


def format_train_side(name: str, f: dict[str, Any]) -> str:
    """One side of ``bench train``: speed, where a step's time goes, and its dev F1."""
    phases = f["phase_seconds"]
    total = sum(phases.values()) or 1.0
    split = " ".join(f"{k} {100 * v / total:.0f}%" for k, v in phases.items())
    line = (
        f"{name:16s} {f['head']:20s} {f['padding']:36s} {f['precision']:13s} "
        f"{f['samples_per_s']:7.2f} samples/s  {f['tokens_per_batch']:7.0f} tokens/batch  "
        f"macro F1 {f['f1_macro']:.3f}  [{split}]"
    )
    if "op_shares" in f:
        line += "  ops: " + " ".join(f"{k} {100 * v:.0f}%" for k, v in f["op_shares"].items())
    return line


@app.command("serve")
def bench_serve(
    model_uri: str | None = typer.Option(
        None, help="Model to benchmark (default: MiniLM with an untrained head, saved to a folder)."
    ),
    clients: str = typer.Option("1,4,16,32", help="Comma-separated concurrency levels."),
    seconds: float = typer.Option(12.0, min=1.0, help="Load time per concurrency level."),
    swap_requests: int = typer.Option(5000, min=0, help="Requests in the swap test (0: skip)."),
    swap_clients: int = typer.Option(16, min=1, help="Concurrent clients in the swap test."),
    swap_every: float = typer.Option(1.0, min=0.1, help="Seconds between deploys / rollbacks."),
    precision: str | None = typer.Option(None, help="Serving precision (serve.precision)."),
    runtime: str | None = typer.Option(
        None, help="Runtime of the main server (serve.runtime: torch|onnxruntime|openvino|auto)."
    ),
    runtimes: str = typer.Option(
        "torch,onnxruntime,openvino",
        help="Comma-separated runtimes, one more server each, for the per-runtime table "
        "(empty: none).",
    ),
    tuned_baseline: bool = typer.Option(
        False, help="Give the baseline our serve.omp_wait_policy too (it runs untuned by default)."
    ),
    agreement_pairs: int = typer.Option(
        0, min=0, help="Also check serve.precision against fp32 in-process on N test pairs."
    ),
    batch_tokens: str = typer.Option(
        "",
        help="Comma-separated token budgets to sweep (e.g. 256,512,1024,2048): one server "
        "per budget and runtime, pairs/s and p95 each (empty: no sweep).",
    ),
    sweep_runtimes: str | None = typer.Option(
        None, help="Comma-separated runtimes of the sweep (default: those of --runtimes)."
    ),
    sweep_clients: int = typer.Option(16, min=1, help="Concurrent clients in the sweep."),
    shadow_clients: int = typer.Option(
        0,
        min=0,
        help="Concurrent clients of the shadow-overhead run: one server with every request "
        "mirrored to a shadow challenger against one without, in alternating slices "
        "(0: not run).",
    ),
    shadow_share: float | None = typer.Option(
        None,
        min=0.001,
        max=1.0,
        help="Share of requests mirrored in the shadow-overhead run (default: "
        "promote.online_share, the online phase's default).",
    ),
    evidence_reuse: int = typer.Option(
        0,
        min=0,
        help="Also run a workload where each evidence is checked against N claims in a row: "
        "the baseline, citeops serve without and with its evidence cache (0: not run).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Throughput and latency of `citeops serve` against a per-request transformers
    pipeline server (fp32, same model), plus a blue-green swap test under load, and with
    --batch-tokens a sweep of the micro-batcher's token budget per runtime."""
    from citeops.benchmarks.serve import BenchOptions, format_report, run_serve_bench
    from citeops.serving.server import apply_omp_wait_policy

    settings = settings_from(serve={"precision": precision, "runtime": runtime})
    apply_omp_wait_policy(settings)  # for the in-process agreement check
    chosen = _runtime_names(runtimes, "--runtimes")
    swept = _runtime_names(sweep_runtimes, "--sweep-runtimes") if sweep_runtimes else None
    options = BenchOptions(
        model_uri=model_uri,
        clients=tuple(int(c) for c in clients.split(",") if c.strip()),
        seconds=seconds,
        swap_requests=swap_requests,
        swap_clients=swap_clients,
        swap_every=swap_every,
        tuned_baseline=tuned_baseline,
        agreement_pairs=agreement_pairs,
        runtimes=chosen,
        batch_tokens=_token_budgets(batch_tokens),
        sweep_runtimes=swept,
        sweep_clients=sweep_clients,
        shadow_clients=shadow_clients,
        shadow_share=shadow_share,
        evidence_reuse=evidence_reuse,
    )
    report = run_serve_bench(settings, options, progress=info)
    if as_json:
        print_json(report)
    else:
        typer.echo(format_report(report))


def _runtime_names(value: str, option: str) -> tuple[str, ...]:
    """Comma-separated runtime names, each torch, onnxruntime, openvino or auto."""
    chosen = tuple(r.strip() for r in value.split(",") if r.strip())
    unknown = set(chosen) - {"torch", "onnxruntime", "openvino", "auto"}
    if unknown:
        raise typer.BadParameter(f"unknown runtimes {sorted(unknown)}", param_hint=option)
    return chosen


def _token_budgets(value: str) -> tuple[int, ...]:
    """``"256,512"`` -> ``(256, 512)``; each a whole number of at least 1."""
    names = _names(value) or []
    if not all(name.isdigit() and int(name) >= 1 for name in names):
        raise typer.BadParameter(
            f"{value!r}: whole numbers of at least 1, comma-separated", param_hint="--batch-tokens"
        )
    return tuple(int(name) for name in names)


@app.command("ingest")
def bench_ingest(
    lines: int | None = typer.Option(None, "--lines", help="Lines to generate (1,000,000)."),
    stores: str | None = typer.Option(
        None,
        "--stores",
        help="Comma-separated stores to ingest the same lines into, each fresh: sqlite, "
        "postgresql (default: sqlite, or postgresql when --store-url is given).",
    ),
    store_url: str | None = typer.Option(
        None,
        "--store-url",
        help="PostgreSQL server for `postgresql` (postgresql+psycopg://...; default "
        "bench.ingest_postgres_url); each run makes a database of its own there and drops it.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate realistic feedback lines, ingest them into a fresh store of each kind asked
    for, and report lines/s and peak memory beside the baseline of reading and
    JSON-parsing them only."""
    from citeops.benchmarks.ingest import run_bench

    result = run_bench(
        settings_from(),
        progress=info,
        bench=load_bench_settings(ingest_lines=lines),
        stores=_bench_stores(stores, store_url),
    )
    if as_json:
        print_json(result)
        return
    for store in result["stores"]:
        typer.echo(
            f"{store['store']:<10} {store['lines']:>10,} lines in {store['seconds']:7.1f} s  "
            f"{store['lines_per_second']:>10,.0f} lines/s  "
            f"peak RSS {store['peak_rss_mb']:,.0f} MB"
        )
    base = result["baseline"]
    typer.echo(
        f"{'baseline':<10} {result['lines']:>10,} lines in {base['seconds']:7.1f} s  "
        f"{base['lines_per_second']:>10,.0f} lines/s  (read + JSON parse only)"
    )
    typer.echo(f"report     {result['report']}")


def _bench_stores(stores: str | None, store_url: str | None) -> list[str]:
    """The stores `bench ingest` runs on: names, with `postgresql` as ``store_url``."""
    names = _names(stores) or (["postgresql"] if store_url else ["sqlite"])
    unknown = sorted(set(names) - {"sqlite", "postgresql"})
    if unknown:
        raise typer.BadParameter(
            f"unknown stores {unknown}: sqlite, postgresql", param_hint="--stores"
        )
    return [store_url if name == "postgresql" and store_url else name for name in names]


@app.command("drift")
def bench_drift(
    rows: int | None = typer.Option(
        None, "--rows", min=30, help="current queries to check (bench.drift_rows, 1000000)"
    ),
    evidently_python: str | None = typer.Option(
        None,
        "--evidently-python",
        help=f"python of a venv with evidently==0.7.23 (or ${EVIDENTLY_PYTHON_ENV})",
    ),
    scenario: str = typer.Option(
        "same", "--scenario", help="same: training dataset mix; mixed: uniform (a shift)"
    ),
    reference_datasets: str | None = typer.Option(
        None, "--reference-datasets", help="comma-separated, default: the training datasets"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time a drift run on ROWS generated distinct queries; compare with Evidently when
    available."""
    from citeops.benchmarks.drift import run_speed_bench

    bench = load_bench_settings(drift_rows=rows)
    python = evidently_python or os.environ.get(EVIDENTLY_PYTHON_ENV)
    names = _names(reference_datasets)
    result = run_speed_bench(
        settings_from(),
        bench.drift_rows,
        python,
        progress=info,
        scenario=scenario,
        datasets=tuple(names) if names else None,
        bench=bench,
    )
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        typer.echo(f"{key}: {value}")


@app.command("drift-calibration")
def bench_drift_calibration(
    rounds: int = typer.Option(40, "--rounds", min=1, help="random same-data splits"),
    mix_rounds: int = typer.Option(10, "--mix-rounds", min=0, help="rounds per mix share"),
    current_rows: int = typer.Option(300, "--current-rows", min=30),
    workers: int = typer.Option(1, "--workers", min=1, help="processes running rounds"),
    shares: str = typer.Option(
        "1,0.5,0.25,0.1", "--shares", help="shares of Citation-Integrity in the power rounds"
    ),
    pool: str = typer.Option(
        "scifact",
        "--pool",
        help="datasets re-split for the false-alarm rounds (with citint: no power rounds)",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """False-alarm rate (SciFact vs SciFact) and power (Citation-Integrity mixed in)."""
    from citeops.benchmarks.drift_calibration import format_calibration, run_calibration

    result = run_calibration(
        settings_from(),
        rounds,
        mix_rounds,
        current_rows,
        shares=[float(x) for x in shares.split(",") if x.strip()],
        progress=info,
        workers=workers,
        pool_datasets=tuple(_names(pool) or ["scifact"]),
    )
    if as_json:
        print_json(result)
        return
    typer.echo(format_calibration(result))


@app.command("flagging")
def bench_flagging(
    file: str = typer.Option(
        "flagging.jsonl", "--file", help="Flagging file to read (or write: --model-uri)."
    ),
    model_uri: str | None = typer.Option(
        None,
        "--model-uri",
        help="Score pairs with this model first and write --file (e.g. "
        "models:/claim-verifier@champion); without it --file is read.",
    ),
    split: str = typer.Option("train", "--split", help="Citation-Integrity split to score."),
    pool: int | None = typer.Option(None, "--pool", min=10, help="Pairs to score (all)."),
    pairs: int = typer.Option(240, "--pairs", min=10, help="Labels judged per draw."),
    flip_share: float = typer.Option(0.15, "--flip-share", min=0.0, max=1.0),
    resamples: int = typer.Option(50, "--resamples", min=0, help="Draws with fresh flips."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Feedback flagging: precision and recall of each confident-learning rule on labels
    flipped as the demo's users flip them, side by side on the same model probabilities
    (the file's labels, then pooled over resampled draws)."""
    from citeops.benchmarks.feedback_flagging import comparison_text, run_flagging_bench
    from citeops.tasks.errors import CiteopsError

    try:
        result = run_flagging_bench(
            settings_from(), Path(file), model_uri, split, pool, pairs, flip_share, resamples, info
        )
    except ValueError as error:
        raise CiteopsError(str(error)) from None
    if as_json:
        print_json(result)
        return
    typer.echo(comparison_text(result))


@app.command("soak")
def bench_soak(
    minutes: float | None = typer.Option(
        None,
        "--minutes",
        min=0.01,
        help="Measured minutes, fractions allowed (bench.soak_minutes, 10).",
    ),
    rate: float | None = typer.Option(
        None, "--rate", min=0.01, help="Requests per second, open loop (bench.soak_rate, 4)."
    ),
    swap_every: float | None = typer.Option(
        None,
        "--swap-every",
        min=0.1,
        help="Seconds between blue-green swaps (bench.soak_swap_every_seconds, 30).",
    ),
    ingest_every: float | None = typer.Option(
        None,
        "--ingest-every",
        min=0.1,
        help="Seconds between ingests of the endpoint's logs "
        "(bench.soak_ingest_every_seconds, 60).",
    ),
    row_seconds: float = typer.Option(
        60.0, "--row-seconds", min=1.0, help="Seconds per report row and progress line."
    ),
    model_uri: str | None = typer.Option(
        None, help="Model to serve (default: MiniLM with an untrained head, as `bench serve`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Soak `citeops serve` on a fresh home: mixed /predict, /feedback and app traffic at a
    steady rate, a blue-green swap and an ingest at fixed intervals; reports failures,
    latency per row, server RSS and feedback lines acknowledged vs ingested, with goals."""
    from citeops.benchmarks.soak import SoakOptions, format_soak, run_soak_bench

    bench = load_bench_settings(
        soak_minutes=minutes,
        soak_rate=rate,
        soak_swap_every_seconds=swap_every,
        soak_ingest_every_seconds=ingest_every,
    )
    options = SoakOptions(model_uri=model_uri, row_seconds=row_seconds)
    report = run_soak_bench(settings_from(), options, bench, progress=info)
    if as_json:
        print_json(report)
    else:
        typer.echo(format_soak(report))
