"""The distributed-aware bucketed batch sampler: each rank a disjoint shard of one
length-bucketing, the same number of batches on every rank, reshuffled per epoch."""

from __future__ import annotations

import random

import pytest

from citeops.tasks.train.batching import BucketBatchSampler, bucketed_batches, shard_batches


def lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 300) for _ in range(n)]


@pytest.mark.parametrize(("n", "world"), [(100, 2), (101, 2), (37, 3), (8, 4)])
def test_ranks_get_disjoint_shards_of_one_bucketing_covering_every_example(
    n: int, world: int
) -> None:
    sizes = lengths(n)
    whole = bucketed_batches(sizes, batch_size=4, bucket_size_multiplier=3, seed=7)
    shards = [
        list(BucketBatchSampler(sizes, 4, 3, seed=7, rank=r, world_size=world))
        for r in range(world)
    ]
    assert len({len(shard) for shard in shards}) == 1  # same step count on every rank
    seen = [i for shard in shards for batch in shard for i in batch]
    assert set(seen) == set(range(n))  # every example on some rank
    padding = len(seen) - n
    assert padding < world * 4  # only the batches repeated to even the ranks out
    if len(whole) % world == 0:
        assert sorted(seen) == list(range(n))  # disjoint: no example twice
    union = sorted(tuple(b) for shard in shards for b in shard[: len(whole) // world])
    assert set(union) <= {tuple(b) for b in whole}  # the ranks' batches are the bucketing's
    for shard in shards:
        assert len(shard) == len(BucketBatchSampler(sizes, 4, 3, 7, rank=0, world_size=world))


def test_one_process_sees_the_whole_bucketing_and_epochs_reshuffle() -> None:
    sizes = lengths(64)
    sampler = BucketBatchSampler(sizes, 8, 2, seed=3)  # no process group: rank 0 of 1
    first, second = list(sampler), list(sampler)
    assert first == bucketed_batches(sizes, 8, 2, seed=3)
    assert second == bucketed_batches(sizes, 8, 2, seed=4) and second != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # set_epoch (Lightning calls it) replays an epoch
    assert len(sampler) == 8


def test_shard_batches_refuses_a_rank_outside_the_world() -> None:
    with pytest.raises(ValueError, match="outside"):
        shard_batches([[0]], rank=2, world_size=2)
    assert shard_batches([], rank=1, world_size=2) == []
