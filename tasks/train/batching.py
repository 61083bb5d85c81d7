"""Plain tokenisation and batching for training: no Lightning here.

Pairs are tokenised once, **evidence first and claim second**, with ``longest_first``
truncation and no padding; batches are then padded to their own longest pair
(dynamic padding). Training batches come from length buckets: the examples are shuffled,
cut into buckets of ``batch_size * bucket_size_multiplier``, each bucket is sorted by
length and split into batches, and the batches are shuffled again. Every example appears
exactly once per epoch, batches hold pairs of similar length, and the order still
changes from epoch to epoch (no single global sort).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from citeops.tasks.data.multivers import Example


@dataclass(frozen=True, slots=True)
class EncodedPair:
    """One tokenised pair (unpadded) with its label id and its dataset's index."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    label: int
    group: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    claims: Sequence[str],
    evidences: Sequence[str],
    max_length: int,
    padding: bool | str = False,
) -> dict[str, Any]:
    """Tokenise pairs evidence first, claim second, ``longest_first`` truncation."""
    return tokenizer(
        list(evidences),
        list(claims),
        truncation="longest_first",
        max_length=max_length,
        padding=padding,
    )


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_length: int,
    chunk: int = 512,
    groups: Sequence[str] = (),
    select: Callable[[Sequence[str], Sequence[str]], list[str]] | None = None,
) -> list[EncodedPair]:
    """Tokenise every example once (no padding), in order.

    ``groups`` names the datasets; each pair's ``group`` is its dataset's index there
    (0 when ``groups`` is empty or does not list it). ``select`` maps (claims, evidences)
    to the evidence texts the model sees (the model's evidence selection, see
    :meth:`tasks.classifier.preprocess.EvidenceSelector.select_many`); None keeps them whole.
    """
    group_of = {name: i for i, name in enumerate(groups)}
    encoded: list[EncodedPair] = []
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        claims = [ex.claim for ex in part]
        evidences = [ex.evidence for ex in part]
        if select is not None:
            evidences = select(claims, evidences)
        batch = tokenize_pairs(tokenizer, claims, evidences, max_length)
        types = batch.get("token_type_ids")
        for i, ex in enumerate(part):
            encoded.append(
                EncodedPair(
                    batch["input_ids"][i],
                    types[i] if types is not None else None,
                    ex.label,
                    group_of.get(ex.dataset, 0),
                )
            )
    return encoded


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, bucket_size_multiplier: int, seed: int
) -> list[list[int]]:
    """Index batches of similar length; each index appears exactly once.

    Shuffle with ``seed``, cut into buckets of ``batch_size * bucket_size_multiplier``,
    sort each bucket by length, split into batches, shuffle the batches.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket = max(batch_size * bucket_size_multiplier, batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: lengths[i])
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: indices sorted by length (order does not matter there)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def shard_batches(batches: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s share of ``batches``: every ``world_size``-th batch from ``rank``.

    The list is first padded by repeating its first batches so that every rank gets the
    same number of batches (DDP ranks must take the same number of steps or the gradient
    all-reduce waits forever); without padding the shards are disjoint and cover every
    batch once.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    if world_size == 1 or not batches:
        return list(batches)
    padded = list(batches) + list(batches[: (-len(batches)) % world_size])
    return padded[rank::world_size]


def distributed_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process: from ``torch.distributed`` once its process
    group is up (Lightning sets it up before the first epoch), else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BucketBatchSampler:
    """A batch sampler yielding :func:`bucketed_batches`, reshuffled every epoch and
    sharded across distributed ranks.

    Every rank draws the same batches (same seed and epoch), then keeps its own shard
    (:func:`shard_batches`): one length-bucketing for the whole data, each rank a disjoint
    part of it. ``rank`` / ``world_size`` None: read from ``torch.distributed`` when an
    epoch starts. Lightning must not wrap it in a ``DistributedSampler``
    (``Trainer(use_distributed_sampler=False)``): the sharding is here.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        bucket_size_multiplier: int,
        seed: int,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.bucket_size_multiplier = bucket_size_multiplier
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle as for ``epoch`` (the ``DistributedSampler`` convention)."""
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        return distributed_rank()

    def __iter__(self) -> Iterator[list[int]]:
        batches = bucketed_batches(
            self.lengths, self.batch_size, self.bucket_size_multiplier, self.seed + self.epoch
        )
        self.epoch += 1
        return iter(shard_batches(batches, *self._shard()))

    def __len__(self) -> int:
        batches = -(-len(self.lengths) // self.batch_size) if self.lengths else 0
        _, world_size = self._shard()
        return -(-batches // world_size)


def collate_padded(
    pairs: Sequence[EncodedPair],
    pad_token_id: int,
    pad_to: int | None = None,
    with_groups: bool = False,
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest pair (or to ``pad_to``); returns model inputs + labels
    (and ``groups``, the dataset indices, when ``with_groups``)."""
    import torch

    width = pad_to or max(len(p) for p in pairs)
    ids = torch.full((len(pairs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    has_types = pairs[0].token_type_ids is not None
    types = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, pair in enumerate(pairs):
        n = len(pair)
        ids[row, :n] = torch.tensor(pair.input_ids)
        mask[row, :n] = 1
        if has_types:
            types[row, :n] = torch.tensor(pair.token_type_ids)
    batch = {"input_ids": ids, "attention_mask": mask}
    if has_types:
        batch["token_type_ids"] = types
    batch["labels"] = torch.tensor([p.label for p in pairs], dtype=torch.long)
    if with_groups:
        batch["groups"] = torch.tensor([p.group for p in pairs], dtype=torch.long)
    return batch


class EncodedDataset:
    """A map-style dataset over pre-tokenised pairs."""

    def __init__(self, pairs: Sequence[EncodedPair]) -> None:
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> EncodedPair:
        return self.pairs[index]

    @property
    def lengths(self) -> list[int]:
        return [len(p) for p in self.pairs]


def class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """Inverse-frequency weights ``N / (C * n_c)`` (a class absent from ``labels`` gets 1.0)."""
    counts = [0] * num_classes
    for label in labels:
        counts[label] += 1
    total = len(labels)
    return [total / (num_classes * n) if n else 1.0 for n in counts]
