"""Training batches on the device: x_real, y_org, x_ref, x_ref2, y_trg, z_trg, z_trg2.

Everything random in a batch (images, targets, latent codes, physics augmentation) is drawn
from generators seeded by (seed, step) for the GLOBAL batch and then sliced for this rank, so
batches are identical across resumption and across data-parallel layouts.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np
import torch

from ..streams import Stream


@dataclass
class Batch:
    x_real: torch.Tensor
    y_org: torch.Tensor
    x_ref: torch.Tensor
    x_ref2: torch.Tensor
    y_trg: torch.Tensor
    z_trg: torch.Tensor
    z_trg2: torch.Tensor
    y_ref: torch.Tensor  # label of x_ref / x_ref2 (= y_trg for single domains)

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                        for f in fields(self)})

    def pin_memory(self) -> "Batch":
        """Page-locked host copies: a non-blocking copy to the GPU then overlaps compute."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


def step_generator(seed: int, step: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator for one (seed, step, stream) triple, independent of global RNG state.

    On ``device`` so that draws need no host-device copy; the same triple gives the same draws
    on the same device type (CPU and CUDA generators differ)."""
    value = np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(value) & ((1 << 63) - 1))


class BatchFetcher:
    """Makes the batch of step ``t`` from the tensor cache (CPU work, then one copy to device).

    ``sampler`` (BalancedStepSampler or SetStepSampler) decides the rows and labels of the
    global batch; this rank reads only its own slice of the rows from the cache.
    """

    def __init__(self, images: np.ndarray, sampler, latent_dim: int, seed: int, augment=None,
                 rank: int = 0, world: int = 1):
        if sampler.batch_size % world:
            raise ValueError("batch_size must be divisible by the number of processes")
        self.images, self.sampler = images, sampler
        self.batch_size, self.latent_dim, self.seed = sampler.batch_size, latent_dim, seed
        self.augment = augment
        self.rank, self.world = rank, world

    def __call__(self, step: int) -> Batch:
        idx = self.sampler.indices(step)
        g = step_generator(self.seed, step, Stream.LATENTS)
        z = torch.randn(2, self.batch_size, self.latent_dim, generator=g)
        n = self.batch_size // self.world
        sl = slice(self.rank * n, (self.rank + 1) * n)
        # Take this rank's rows first: only they are read from the (memory-mapped) cache.
        rows = np.concatenate([idx.src[sl], idx.ref[sl], idx.ref2[sl]])
        x = torch.from_numpy(np.ascontiguousarray(self.images[rows])).float()
        if self.augment is not None and self.augment.enabled:
            from ..transforms import apply_physics, sample_physics

            # Parameters are drawn for the global batch (3 x B images) and this rank's share taken.
            template = torch.empty(3 * self.batch_size, *x.shape[1:])
            params = sample_physics(template, self.augment, step_generator(self.seed, step, Stream.AUGMENT))
            mine = torch.cat([torch.arange(k * self.batch_size + sl.start, k * self.batch_size + sl.stop)
                              for k in range(3)])
            x = apply_physics(x, {k: v[mine] for k, v in params.items()},
                              contrast_about=self.augment.contrast_about)
        x_real, x_ref, x_ref2 = x.split(n)
        y = {k: torch.from_numpy(np.ascontiguousarray(getattr(idx, k)[sl])) for k in ("y_org", "y_trg", "y_ref")}
        return Batch(x_real=x_real, x_ref=x_ref, x_ref2=x_ref2, z_trg=z[0, sl], z_trg2=z[1, sl], **y)


def iterate_batches(fetch: BatchFetcher, start: int, stop: int, device: torch.device,
                    prefetch: int = 0) -> Iterator[tuple[int, Batch]]:
    """Yield ``(step, batch)`` for steps ``start..stop-1``, optionally prepared in a background
    thread (pinned memory, non-blocking copy) so loading stays off the GPU's critical path.

    An exception raised while preparing a batch is raised here, in the consumer, with its own
    type and message (a dead thread would otherwise leave the consumer, and under torchrun every
    other rank, waiting for ever). Closing the iterator early ends the thread."""
    if prefetch <= 0:
        for step in range(start, stop):
            yield step, fetch(step).to(device)
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop_flag = threading.Event()

    def put(item) -> bool:
        # Bounded waits: once the consumer has gone, nobody takes from the queue any more.
        while not stop_flag.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for step in range(start, stop):
                if stop_flag.is_set():
                    return
                b = fetch(step)
                if device.type == "cuda":
                    b = b.pin_memory()
                if not put((step, b)):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failed(exc))

    t = threading.Thread(target=work, name="xraystyle-prefetch", daemon=True)
    t.start()
    try:
        for _ in range(start, stop):
            item = _get(q, t)
            if isinstance(item, _Failed):
                raise item.exc
            step, b = item
            yield step, b.to(device, non_blocking=True)
    finally:
        stop_flag.set()
        # The worker notices within one put timeout, or after the batch it is preparing.
        t.join(timeout=10.0)


@dataclass
class _Failed:
    exc: BaseException


def _get(q: queue.Queue, worker: threading.Thread):
    """Next item of the prefetch queue; an error if the worker ended without handing one over."""
    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            if not worker.is_alive() and q.empty():
                raise RuntimeError("the batch preparation thread ended without a batch or an "
                                   "error") from None
