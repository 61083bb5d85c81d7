"""Benchmarks, apart from the product: each runs its baseline side by side in the same run
and returns JSON-able figures; ``citeops bench …`` (``flows/cli/bench.py``) prints them.

- :mod:`.train`: training throughput, ours against a pyvers-style pad-to-512 loop, and
  (:mod:`.time_to_f1`) the training time each needs to reach the same dev macro F1.
- :mod:`.serve` (+ :mod:`.serve_baseline`): ``citeops serve`` against an
  AI4citations-style per-request pipeline server, and a blue-green swap test.
- :mod:`.ingest`: generated feedback logs ingested, against reading + JSON-parsing them.
- :mod:`.drift`: a drift run on distinct generated queries, against Evidently
  (:mod:`.evidently_compare`, run in its own environment).
- :mod:`.drift_calibration`: false-alarm rate and power of the drift verdict.
"""
