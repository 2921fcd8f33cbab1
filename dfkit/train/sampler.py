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

__all__ = ["ClassBalancedSampler", "class_balanced_weights"]


def class_balanced_weights(labels: Sequence[int]) -> np.ndarray:
    """Per-sample weights ``1 / count[label]``, normalised to sum to 1."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        raise ValueError("no labels")
    counts = np.bincount(y)
    w = 1.0 / counts[y]
    return w / w.sum()


class ClassBalancedSampler(Sampler[int]):
    """Draws ``num_samples`` indices per epoch (default: the dataset size) with probability ``1 / count[label]``.

    Args:
        labels: the class id of every sample of the dataset.
        num_samples: indices per epoch.
        replacement: draw with replacement (the default; needed to oversample rare classes). Without replacement the
            weights only shape the order, and ``num_samples`` must not exceed the dataset size.
        seed: base seed; epoch ``e`` draws from ``numpy.random.default_rng([seed, e])``.
    """

    def __init__(self, labels: Sequence[int], num_samples: int | None = None, replacement: bool = True,
                 seed: int = 0) -> None:
        self.weights = class_balanced_weights(labels)
        self.num_samples = int(num_samples if num_samples is not None else len(self.weights))
        if self.num_samples <= 0:
            raise ValueError("num_samples must be positive")
        if not replacement and self.num_samples > len(self.weights):
            raise ValueError("without replacement, num_samples cannot exceed the number of samples")
        self.replacement = replacement
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        # numpy rather than torch.multinomial, which is limited to 2**24 categories (corpora can be larger)
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = rng.choice(len(self.weights), size=self.num_samples, replace=self.replacement, p=self.weights)
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples
