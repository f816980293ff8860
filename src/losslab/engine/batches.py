"""Where a run's mini-batches come from: tensors in memory, or a torch.utils.data.DataLoader streaming a
dataset too large to decode at once. Both give the textbook batch order (`epoch_order`), so the same seed
gives the same batches, and the same numbers, whichever is used."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's sample order, exactly as the textbook loop
    `DataLoader(data, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))` draws it: the
    iterator first takes a base seed from the generator (for worker seeding), then RandomSampler draws
    randperm(n) and, on reaching its end, one more randperm(n) for the (empty) remainder.
    tests/test_data.py checks this against a real DataLoader over several epochs."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)
    return order


class InMemory:
    """Decoded tensors on the run's device, indexed per batch (no per-sample work per epoch)."""

    streamed = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        perm = epoch_order(n, generator).to(self.x.device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            yield self.x[idx], self.y[idx]

    def chunks(self, size: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self), size):
            yield self.x[i:i + size], self.y[i:i + size]

    def head(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[:rows], self.y[:rows]

    def full(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sample in order: the one batch of full-batch training."""
        return self.x, self.y

    def labels(self) -> torch.Tensor:
        return self.y


class TextbookSampler(torch.utils.data.Sampler[int]):
    """The order `DataLoader(shuffle=True, generator=g)` gives, drawn from the run's generator each epoch
    (also with persistent workers, whose iterator would otherwise skip the per-epoch base-seed draw)."""

    def __init__(self, n: int):
        self.n = n
        self.generator: Optional[torch.Generator] = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        assert self.generator is not None, "set the run's generator before iterating"
        return iter(epoch_order(self.n, self.generator).tolist())


class Streamed:
    """A dataset decoded batch by batch by `workers` worker processes (persistent across epochs; pinned memory
    on CUDA), through the same training loop."""

    streamed = True

    def __init__(self, dataset: Any, batch_size: int, workers: int, device: torch.device, labels: torch.Tensor):
        self.dataset, self.workers, self.device = dataset, workers, device
        self._labels = labels
        self.sampler = TextbookSampler(len(dataset))
        pin = device.type == "cuda"
        common = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=pin)
        # the loader's own generator only seeds its workers: a separate one, so neither the run's batch order
        # nor the global RNG (dropout) is touched by it
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                                  generator=torch.Generator().manual_seed(0), **common)
        self.ordered = torch.utils.data.DataLoader(dataset, batch_size=max(batch_size, 256), shuffle=False,
                                                   generator=torch.Generator().manual_seed(0), **common)

    def __len__(self) -> int:
        return len(self.dataset)

    def rebatched(self, batch_size: int) -> "Streamed":
        """The same data in batches of `batch_size` (a run that overrides the batch size): new loaders, and their
        own worker processes."""
        return Streamed(self.dataset, batch_size, self.workers, self.device, self._labels)

    def _to(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = batch
        return xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.generator = generator
        for batch in self.loader:
            yield self._to(batch)

    def chunks(self, size: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.ordered:
            yield self._to(batch)

    def full(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sample in order (a batch size at least the data's asks for full-batch training)."""
        xs, ys = zip(*self.chunks())
        return torch.cat(xs), torch.cat(ys)

    def head(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.dataset[i] for i in range(min(rows, len(self.dataset)))]
        x = torch.stack([torch.as_tensor(a) for a, _ in items]).to(self.device)
        y = torch.as_tensor([int(b) for _, b in items], dtype=torch.int64).to(self.device)
        return x, y

    def labels(self) -> torch.Tensor:
        return self._labels
