"""The warm start's batch order: every row once per epoch, rows sharing a prefix batched together."""

from __future__ import annotations

import random

from atlas_plugins.training.warmstart import PrefixGroupedSampler


def _rows(seed: int = 0) -> list[list[int]]:
    """Rows of four 'system texts' (long shared prefixes), each followed by a distinct suffix."""
    rng = random.Random(seed)
    systems = [[s] * 50 for s in range(4)]
    rows = [systems[i % 4] + [rng.randrange(1000) for _ in range(rng.randrange(5, 30))] for i in range(37)]
    rng.shuffle(rows)
    return rows


def _shared(batch: list[list[int]]) -> int:
    """Tokens the batch would not recompute if its rows' common prefixes were shared (pairwise LCP with the first)."""
    first = batch[0]
    total = 0
    for row in batch[1:]:
        n = 0
        while n < min(len(first), len(row)) and first[n] == row[n]:
            n += 1
        total += n
    return total


def test_every_row_once_per_epoch_and_epochs_differ():
    rows = _rows()
    sampler = PrefixGroupedSampler(rows, batch_size=8, seed=3, prefix=50)
    assert len(sampler) == len(rows)
    epochs = [list(iter(sampler)) for _ in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(len(rows)))
    assert epochs[0] != epochs[1] != epochs[2]


def test_batches_share_more_prefix_than_random_order():
    rows = _rows(1)
    grouped = list(iter(PrefixGroupedSampler(rows, batch_size=8, seed=0, prefix=50)))
    shuffled = list(range(len(rows)))
    random.Random(0).shuffle(shuffled)

    def saved(order: list[int]) -> int:
        return sum(_shared([rows[i] for i in order[j : j + 8]]) for j in range(0, len(order), 8))

    assert saved(grouped) > 2 * saved(shuffled)
    # Within a full batch of the grouped order, at most two system texts meet (a group's tail).
    for j in range(0, len(grouped) - 8, 8):
        assert len({rows[i][0] for i in grouped[j : j + 8]}) <= 2


def test_same_seed_same_order():
    rows = _rows()
    a = PrefixGroupedSampler(rows, batch_size=4, seed=7)
    b = PrefixGroupedSampler(rows, batch_size=4, seed=7)
    assert list(iter(a)) == list(iter(b))
