"""Class-balanced sampling: every class is drawn equally often in expectation.

Each sample is weighted by the inverse frequency of its class (``1 / count[label]``), and indices are drawn with
replacement from those weights by a generator seeded with ``(seed, epoch)``. Call :meth:`ClassBalancedSampler.set_epoch`
at the start of each epoch (the training loop does, as with ``DistributedSampler``): the order of an epoch then depends
only on ``(seed, epoch)``, so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ClassBalancedSampler", "ShuffleSampler", "class_balanced_weights"]


def class_balanced_weights(labels: Sequence[int]) -> np.ndarray:
    """Per-sample weights ``1 / count[label]``, normalised to sum to 1."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        raise ValueError("no labels")
    counts = np.bincount(y)
    w = 1.0 / counts[y]
    return w / w.sum()


class _ShardedEpochSampler(Sampler[int]):
    """Seeded per-epoch index lists (:meth:`_draw`), sharded over ``num_replicas`` processes."""

    def __init__(self, num_samples: int, seed: int, num_replicas: int, rank: int) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.total = int(num_samples)
        if self.total <= 0:
            raise ValueError("num_samples must be positive")
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.num_samples = -(-self.total // self.num_replicas)  # this process's share
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = self._draw(rng, self.num_samples * self.num_replicas)
        return iter(idx[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClassBalancedSampler(_ShardedEpochSampler):
    """Draws ``num_samples`` indices per epoch (default: the dataset size) with probability ``1 / count[label]``.

    Args:
        labels: the class id of every sample of the dataset.
        num_samples: indices per epoch.
        replacement: draw with replacement (the default; needed to oversample rare classes). Without replacement the
            weights only shape the order, and ``num_samples`` must not exceed the dataset size.
        seed: base seed; epoch ``e`` draws from ``numpy.random.default_rng([seed, e])``.
        num_replicas, rank: data-parallel sharding (see the module docstring); ``len()`` is this process's share.
    """

    def __init__(self, labels: Sequence[int], num_samples: int | None = None, replacement: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        self.weights = class_balanced_weights(labels)
        n = int(num_samples if num_samples is not None else len(self.weights))
        super().__init__(n, seed, num_replicas, rank)
        if not replacement and self.num_samples * self.num_replicas > len(self.weights):
            raise ValueError("without replacement, num_samples cannot exceed the number of samples")
        self.replacement = replacement

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # numpy rather than torch.multinomial, which is limited to 2**24 categories (corpora can be larger)
        return rng.choice(len(self.weights), size=size, replace=self.replacement, p=self.weights)


class ShuffleSampler(_ShardedEpochSampler):
    """``num_samples`` indices per epoch (default: the dataset size) in a seeded random order, each index once per
    pass over the dataset (successive permutations when ``num_samples`` exceeds it)."""

    def __init__(self, size: int, num_samples: int | None = None, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0) -> None:
        if size <= 0:
            raise ValueError("no samples")
        self.size = int(size)
        super().__init__(int(num_samples if num_samples is not None else size), seed, num_replicas, rank)

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        reps = -(-size // self.size)
        return np.concatenate([rng.permutation(self.size) for _ in range(reps)])[:size]
