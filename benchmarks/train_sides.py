"""The two sides of the training benchmark: batches, the timed loop, scoring."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from citeops.tasks.data.multivers import Example, read_split, shuffled

if TYPE_CHECKING:
    import torch

    from citeops.configs.settings import Settings
    from citeops.tasks.classifier.preprocess import EvidenceSelection


class PadToMaxDataset:
    """The pyvers-style dataset: tokenise and pad to ``max_length`` on every access."""

    def __init__(self, examples: Sequence[Example], tokenizer: Any, max_length: int) -> None:
        self.examples = list(examples)
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import torch

        ex = self.examples[index]
        enc = self.tokenizer(
            ex.evidence,
            ex.claim,
            truncation="longest_first",
            max_length=self.max_length,
            padding="max_length",
            return_tensors="pt",
        )
        item = {k: v.squeeze(0) for k, v in enc.items()}
        item["labels"] = torch.tensor(ex.label)
        return item


def pad_to_max_batches(
    examples: Sequence[Example], tokenizer: Any, max_length: int, batch_size: int, seed: int
) -> Iterable[dict[str, torch.Tensor]]:
    """Shuffled fixed-width batches from :class:`PadToMaxDataset` through a DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    dataset = PadToMaxDataset(examples, tokenizer, max_length)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def bucketed_batch_iter(
    examples: Sequence[Example],
    tokenizer: Any,
    max_length: int,
    batch_size: int,
    bucket_size_multiplier: int,
    seed: int,
    select: Callable[[Sequence[str], Sequence[str]], list[str]] | None = None,
    epochs: int = 1,
) -> Iterable[dict[str, torch.Tensor]]:
    """Our pipeline: tokenise once (after ``select``, the evidence selection, if given),
    bucketed batches reshuffled every epoch, each padded to its longest pair.

    A generator: the tokenisation runs on the first ``next``, so a timed step counts it.
    """
    from citeops.tasks.train.batching import BucketBatchSampler, collate_padded, encode_examples

    pairs = encode_examples(tokenizer, examples, max_length, select=select)
    sampler = BucketBatchSampler([len(p) for p in pairs], batch_size, bucket_size_multiplier, seed)
    pad_id = tokenizer.pad_token_id or 0
    for _ in range(epochs):
        for batch in sampler:
            yield collate_padded([pairs[i] for i in batch], pad_id)


class SideRunner:
    """One side of the benchmark: its own model copy, optimiser and batch stream.

    :meth:`step` times one optimiser step including fetching its batch (so tokenisation
    counts), which lets the two sides run interleaved step by step: a load change on
    the shared machine then hits both sides alike.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batches: Iterable[dict[str, torch.Tensor]],
        optimizer: tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler],
        bf16: bool,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        import torch

        self.model = model
        self.model.train()
        self.optimizer, self.scheduler = optimizer
        self.batches = iter(batches)
        self.bf16 = bf16
        self.class_weights = (
            torch.tensor(list(class_weights), dtype=torch.float32) if class_weights else None
        )
        self.steps = 0
        self.samples = 0
        self.tokens = 0
        self.seconds = 0.0
        # where a step's time goes: fetching the batch (tokenisation, selection, padding),
        # forward, backward, optimiser; they sum to ``seconds``
        self.phase_seconds = dict.fromkeys(STEP_PHASES, 0.0)

    def step(self) -> None:
        import torch

        clock = PhaseClock()
        batch = dict(next(self.batches))
        labels = batch.pop("labels")
        clock.lap("fetch")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(**batch).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=self.class_weights)
        clock.lap("forward")
        loss.backward()
        clock.lap("backward")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        clock.lap("optimizer")
        for phase, seconds in clock.laps.items():
            self.phase_seconds[phase] += seconds
        self.seconds += clock.total
        self.steps += 1
        self.samples += len(labels)
        self.tokens += batch["input_ids"].numel()


STEP_PHASES = ("fetch", "forward", "backward", "optimizer")


class PhaseClock:
    """Consecutive laps of one step: each :meth:`lap` closes the phase since the last."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.start


def score(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    max_length: int,
    selection: EvidenceSelection | None = None,
    batch_size: int = 16,
) -> dict[str, float]:
    """Macro F1 and accuracy on ``examples`` through the shared inference path (fp32), with
    the model's evidence ``selection`` (None: whole evidence). Leaves the model in eval
    mode."""
    from citeops.tasks.classifier.preprocess import EvidenceSelection
    from citeops.tasks.classifier.stats import classification_metrics
    from citeops.tasks.inference.predictor import ClaimVerifier

    verifier = ClaimVerifier(
        model, tokenizer, max_length=max_length, selection=selection or EvidenceSelection()
    )
    probs = verifier.predict_proba(
        [e.claim for e in examples], [e.evidence for e in examples], batch_size=batch_size
    )
    return classification_metrics(probs, [e.label for e in examples])


def recipe_selection(
    settings: Settings, tokenizer: Any, max_length: int
) -> tuple[EvidenceSelection, Callable[[Sequence[str], Sequence[str]], list[str]] | None]:
    """The evidence selection ``citeops train`` applies with ``settings`` and its batch
    function for ``tokenizer`` at ``max_length`` (None when selection is off)."""
    from citeops.tasks.classifier.preprocess import EvidenceSelector
    from citeops.tasks.train.fit import evidence_selection

    selection = evidence_selection(settings)
    selector = EvidenceSelector(selection, tokenizer, max_length)
    return selection, selector.select_many if selection.enabled else None


def bench_examples(
    settings: Settings, dataset: str, n_train: int | None, n_eval: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """A fixed training subset (``dataset`` train; None: all of it) and evaluation subset
    (its dev split), each shuffled by ``seed``."""
    train = shuffled(read_split(settings.data_dir, dataset, "train"), seed)[:n_train]
    dev = shuffled(read_split(settings.data_dir, dataset, "dev"), seed)[:n_eval]
    return train, dev


# operator groups of a profiled step, matched on the operator's name (first match wins)
OP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("scaled_dot_product", "attention", "bmm", "softmax")),
    ("linear", ("addmm", "aten::mm", "linear")),
    ("embedding", ("embedding",)),
)


def op_group(name: str) -> str:
    """The group of an operator (``other`` for norms, activations, element-wise ops)."""
    lowered = name.lower()
    for group, needles in OP_GROUPS:
        if any(needle in lowered for needle in needles):
            return group
    return "other"


def op_shares(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], bf16: bool
) -> dict[str, float]:
    """Share of one forward + backward's operator time (self CPU time) per :data:`OP_GROUPS`
    group, under the PyTorch profiler; the gradients are dropped after (no optimiser step)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    inputs = dict(batch)
    labels = inputs.pop("labels")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
    model.zero_grad(set_to_none=True)
    totals = dict.fromkeys([group for group, _ in OP_GROUPS] + ["other"], 0.0)
    for event in prof.key_averages():
        totals[op_group(event.key)] += event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {group: round(value / whole, 4) for group, value in totals.items()}
