"""Sample queues for class-conditional drifting (PAPER.md section 1.5; Deng et al. 2026, App. A.8).

A MoCo-like memory replaces a class-balanced data loader: every training step pushes the freshly loaded
real samples into a FIFO ring buffer of their class (release: 128 per class) and into one global ring
buffer of unconditional samples (release: 1000). Positives are drawn from the class buffer and the CFG
negatives from the global buffer, **without replacement**, falling back to drawing with replacement when a
buffer holds fewer entries than requested (the release's ``ArrayMemoryBank.sample``).

Everything is vectorised (no Python loop over samples or classes). The buffers are part of the method's
``state_dict``, so a resumed run continues with exactly the queues it had. Training draws are keyed
(``keyed=``: by the group's global index, ``methods.noise``); without a key they come from the torch RNG
or a given generator.

Storage (``QueueStorage``): the buffers live on the training device in float32 by default, or in host
memory (``device: cpu``, as the release's numpy banks) and in a compact dtype: ``float16``/``bfloat16``,
or ``uint8`` for images that were uint8 pixels mapped to [-1, 1] (x = u / 127.5 - 1: stored as u, read
back bitwise equal). The pixel recipes need it: 1000 classes x 128 x 3 x 256 x 256 is 100 GB in float32,
25 GB as uint8. Draws are made where the buffers are, and samples come back as float32 (float64 from
float64 buffers) on the device the queues were pushed from.
"""
from __future__ import annotations

import torch
from torch import Tensor

from methods.noise import keyed_rand


Keyed = tuple[tuple[int, ...], range]     # (stream key, global indices of the sampled rows)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8,
          "float64": torch.float64}                # float64: for exact (finite-difference) tests
DEVICES = ("same", "cpu")


class QueueStorage:
    """Where the buffers live (``same``: the pushed samples' device, or ``cpu``) and in which dtype."""

    def __init__(self, device: str = "same", dtype: str = "float32"):
        if device not in DEVICES:
            raise ValueError(f"method.queue_device must be one of {list(DEVICES)}, got '{device}'")
        if dtype not in DTYPES:
            raise ValueError(f"method.queue_dtype must be one of {list(DTYPES)}, got '{dtype}'")
        self.device, self.dtype = device, DTYPES[dtype]

    def place(self, x: Tensor) -> torch.device:
        return x.device if self.device == "same" else torch.device("cpu")

    def encode(self, x: Tensor, device: torch.device) -> Tensor:
        if self.dtype == torch.uint8:                       # u / 127.5 - 1 -> u (exact for uint8 pixels)
            x = ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255)
        return x.to(device=device, dtype=self.dtype)

    def decode(self, x: Tensor, device: torch.device) -> Tensor:
        x = x.to(device, non_blocking=True)
        if self.dtype == torch.uint8:
            return x.float().div_(127.5).sub_(1.0)
        return x.to(torch.promote_types(x.dtype, torch.float32))     # half types -> float32; float64 stays


def _uniforms(c: int, n: int, size: int, device, generator: torch.Generator | None,
              keyed: Keyed | None) -> tuple[Tensor, Tensor]:
    """Per row: ``n`` uniforms for draws with replacement and ``size`` sort keys for draws without."""
    if keyed is None:
        return (torch.rand(c, n, generator=generator).to(device),
                torch.rand(c, size, generator=generator).to(device))
    key, index = keyed
    rows = keyed_rand(key, index, (n + size,), device)
    return rows[:, :n], rows[:, n:]


class RingBuffers:
    """``num_queues`` FIFO ring buffers of ``size`` samples each, allocated at the first push."""

    def __init__(self, num_queues: int, size: int, storage: QueueStorage | None = None):
        if num_queues < 1 or size < 1:
            raise ValueError(f"queues need num_queues >= 1 and size >= 1, got {num_queues} and {size}")
        self.num_queues, self.size = num_queues, size
        self.storage = storage or QueueStorage()
        self.out_device: torch.device | None = None           # where samples are returned (the pushes' device)
        self.buf: Tensor | None = None
        self.ptr = torch.zeros(num_queues, dtype=torch.long)
        self.count = torch.zeros(num_queues, dtype=torch.long)

    def push(self, x: Tensor, q: Tensor) -> None:
        """Append samples ``x [B, ...]`` to queues ``q [B]`` in order (the oldest entries are overwritten)."""
        if len(x) != len(q):
            raise ValueError(f"push: {len(x)} samples but {len(q)} queue indices")
        if len(q) and (int(q.min()) < 0 or int(q.max()) >= self.num_queues):
            raise ValueError(f"push: queue index out of range [0, {self.num_queues}): {q.min()}..{q.max()}")
        self.out_device = x.device
        if self.buf is None:
            dev = self.storage.place(x)
            self.buf = torch.zeros(self.num_queues, self.size, *x.shape[1:], dtype=self.storage.dtype, device=dev)
            self.ptr, self.count = self.ptr.to(dev), self.count.to(dev)
        elif tuple(self.buf.shape[2:]) != tuple(x.shape[1:]):
            raise ValueError(f"push: samples of shape {list(x.shape[1:])}, queues hold {list(self.buf.shape[2:])}")
        q = q.to(self.buf.device)
        order = torch.argsort(q, stable=True)                 # group by queue, keep push order within
        qs = q[order]
        n_per = torch.bincount(qs, minlength=self.num_queues)
        first = torch.cumsum(n_per, 0) - n_per                # index in ``qs`` of each queue's first sample
        rank = torch.arange(len(qs), device=qs.device) - first[qs]
        keep = rank >= n_per[qs] - self.size                  # only the newest ``size`` survive one push
        slot = (self.ptr[qs] + rank) % self.size
        self.buf[qs[keep], slot[keep]] = self.storage.encode(x[order.to(x.device)[keep.to(x.device)]], self.buf.device)
        self.ptr = (self.ptr + n_per) % self.size
        self.count = torch.clamp(self.count + n_per, max=self.size)

    def sample(self, q: Tensor, n: int, generator: torch.Generator | None = None, keyed: Keyed | None = None) -> Tensor:
        """``n`` entries of each queue in ``q [C]``: ``[C, n, ...]``; without replacement where possible.

        ``keyed=(key, index)``: the uniforms of row i are item ``index[i]`` of the keyed stream ``key``
        (``methods.noise``), so a draw depends on its group's global index, not on the process."""
        if self.buf is None:
            raise ValueError("sample: the queues are empty; push samples first")
        q = q.to(self.buf.device)
        cnt = self.count[q]
        if bool((cnt == 0).any()):
            raise ValueError(f"sample: queue(s) {q[cnt == 0].unique().tolist()} hold no samples yet")
        c = len(q)
        dev = self.buf.device
        u, keys = _uniforms(c, n, self.size, dev, generator, keyed)
        with_repl = (u * cnt[:, None]).long().clamp(max=self.size - 1)
        if n <= self.size:
            keys = keys.masked_fill(torch.arange(self.size, device=dev)[None] >= cnt[:, None], 2.0)
            without = keys.argsort(dim=1)[:, :n]
            idx = torch.where((cnt >= n)[:, None], without, with_repl)
        else:
            idx = with_repl
        return self.storage.decode(self.buf[q[:, None], idx], self.out_device or dev)

    def state_dict(self) -> dict:
        return {"buf": self.buf, "ptr": self.ptr, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        buf = state["buf"]
        if buf is not None and tuple(buf.shape[:2]) != (self.num_queues, self.size):
            raise ValueError(f"checkpoint queues are {list(buf.shape[:2])}, this run expects "
                             f"[{self.num_queues}, {self.size}] (method.class_queue / global_queue changed?)")
        if buf is not None and buf.dtype != self.storage.dtype:
            raise ValueError(f"checkpoint queues hold {buf.dtype}, this run stores {self.storage.dtype} "
                             f"(method.queue_dtype changed?)")
        ptr, count = state["ptr"], state["count"]
        if buf is not None and self.storage.device == "cpu":      # checkpoints load onto the training device
            buf, ptr, count = buf.cpu(), ptr.cpu(), count.cpu()
        self.buf, self.ptr, self.count = buf, ptr, count


class SampleQueues:
    """Per-class queues plus the global unconditional queue of the release's generator training."""

    def __init__(self, num_classes: int, class_size: int = 128, global_size: int = 1000,
                 storage: QueueStorage | None = None):
        self.classes = RingBuffers(num_classes, class_size, storage)
        self.unconditional = RingBuffers(1, global_size, storage)

    def push(self, x: Tensor, y: Tensor) -> None:
        self.classes.push(x, y)
        self.unconditional.push(x, torch.zeros_like(y))

    def positives(self, labels: Tensor, n: int, generator: torch.Generator | None = None,
                  keyed: Keyed | None = None) -> Tensor:
        return self.classes.sample(labels, n, generator, keyed)

    def negatives(self, groups: int, n: int, generator: torch.Generator | None = None,
                  keyed: Keyed | None = None) -> Tensor:
        """``n`` unconditional samples for each of ``groups`` classes (independent draws per class)."""
        return self.unconditional.sample(torch.zeros(groups, dtype=torch.long), n, generator, keyed)

    def state_dict(self) -> dict:
        return {"classes": self.classes.state_dict(), "unconditional": self.unconditional.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.classes.load_state_dict(state["classes"])
        self.unconditional.load_state_dict(state["unconditional"])
