"""Sample queues of class-conditional drifting (methods/drifting/queue.py, PAPER.md section 1.5)."""
from __future__ import annotations

import pytest
import torch

from methods.drifting.queue import RingBuffers, SampleQueues


def _sequential_push(size, pushes, num_queues):
    """Reference: the release's per-sample ring insert, one sample at a time."""
    buf = [[None] * size for _ in range(num_queues)]
    ptr, count = [0] * num_queues, [0] * num_queues
    for x, q in pushes:
        for xi, qi in zip(x.tolist(), q.tolist()):
            buf[qi][ptr[qi]] = xi
            ptr[qi] = (ptr[qi] + 1) % size
            count[qi] = min(count[qi] + 1, size)
    return buf, ptr, count


def test_push_matches_sequential_ring_insert():
    g = torch.Generator().manual_seed(0)
    rb = RingBuffers(4, 5)
    pushes = []
    for n in (3, 9, 17, 1, 30):
        x = torch.randint(1000, (n,), generator=g).float()
        q = torch.randint(4, (n,), generator=g)
        q[0] = 2
        pushes.append((x, q))
        rb.push(x[:, None], q)
    buf, ptr, count = _sequential_push(5, pushes, 4)
    assert rb.ptr.tolist() == ptr and rb.count.tolist() == count
    for qi in range(4):
        for s in range(count[qi]):
            assert rb.buf[qi, s, 0].item() == buf[qi][s]


def test_sampling_without_replacement_and_fallback():
    rb = RingBuffers(3, 8)
    rb.push(torch.arange(8.0)[:, None] + 100, torch.zeros(8, dtype=torch.long))    # full queue 0
    rb.push(torch.arange(3.0)[:, None] + 200, torch.ones(3, dtype=torch.long))     # 3 entries in queue 1
    g = torch.Generator().manual_seed(1)
    s = rb.sample(torch.tensor([0, 0, 1]), 6, generator=g)[..., 0]
    for row in s[:2]:
        assert len(set(row.tolist())) == 6 and set(row.tolist()) <= set(range(100, 108))   # no repeats
    assert set(s[2].tolist()) <= {200.0, 201.0, 202.0}                                   # with replacement
    full = rb.sample(torch.tensor([0]), 8, generator=g)[0, :, 0]
    assert sorted(full.tolist()) == list(range(100, 108))                                # a permutation
    big = rb.sample(torch.tensor([0]), 20, generator=g)[0, :, 0]                        # n > size
    assert set(big.tolist()) <= set(range(100, 108))


def test_sampling_is_uniform_over_valid_entries():
    rb = RingBuffers(1, 10)
    rb.push(torch.arange(6.0)[:, None], torch.zeros(6, dtype=torch.long))
    g = torch.Generator().manual_seed(2)
    s = rb.sample(torch.zeros(4000, dtype=torch.long), 2, generator=g)[..., 0].flatten()
    freq = torch.bincount(s.long(), minlength=6).double() / len(s)
    assert torch.allclose(freq, torch.full((6,), 1 / 6, dtype=torch.float64), atol=0.02)


def test_state_round_trip_and_errors(tmp_path):
    qs = SampleQueues(num_classes=5, class_size=4, global_size=7)
    x, y = torch.randn(20, 1, 2, 2), torch.randint(5, (20,))
    y[:5] = torch.arange(5)
    qs.push(x, y)
    torch.save(qs.state_dict(), tmp_path / "q.pt")
    qs2 = SampleQueues(num_classes=5, class_size=4, global_size=7)
    qs2.load_state_dict(torch.load(tmp_path / "q.pt"))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(qs.positives(torch.tensor([1, 4]), 3, g1), qs2.positives(torch.tensor([1, 4]), 3, g2))
    assert torch.equal(qs.negatives(2, 5, g1), qs2.negatives(2, 5, g2))
    assert qs.negatives(3, 5, g1).shape == (3, 5, 1, 2, 2)
    with pytest.raises(ValueError, match="class_queue"):
        SampleQueues(num_classes=5, class_size=8).load_state_dict(qs.state_dict())
    fresh = SampleQueues(num_classes=5)
    with pytest.raises(ValueError, match="empty"):
        fresh.positives(torch.tensor([0]), 1)
    fresh.push(torch.zeros(1, 1, 2, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="hold no samples"):
        fresh.positives(torch.tensor([3]), 2)


@pytest.mark.parametrize("dtype", ["uint8", "float16", "bfloat16"])
def test_compact_host_storage_returns_the_float_samples_that_were_pushed(dtype):
    """uint8 pixels mapped to [-1, 1] (as the image sources do) come back bitwise equal from uint8 storage;
    halves come back as their rounding; the sampled rows are those float32 storage gives."""
    from methods.drifting.queue import QueueStorage

    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(256, (40, 3, 4, 4), generator=g, dtype=torch.uint8)
    x = pixels.float().div_(127.5).sub_(1.0)
    y = torch.randint(5, (40,), generator=g)
    ref, compact = SampleQueues(5, 6, 12), SampleQueues(5, 6, 12, QueueStorage("cpu", dtype))
    for q in (ref, compact):
        q.push(x, y)
    key = ((1, 2), range(3, 7))
    a = ref.positives(torch.tensor([0, 1, 2, 4]), 5, keyed=key)
    b = compact.positives(torch.tensor([0, 1, 2, 4]), 5, keyed=key)
    assert compact.classes.buf.dtype == getattr(torch, dtype) and b.dtype == torch.float32
    expected = a if dtype == "uint8" else a.to(getattr(torch, dtype)).float()
    assert torch.equal(b, expected)
    state = compact.state_dict()
    again = SampleQueues(5, 6, 12, QueueStorage("cpu", dtype))
    again.load_state_dict(state)
    assert torch.equal(again.positives(torch.tensor([0, 1, 2, 4]), 5, keyed=key), b)
    with pytest.raises(ValueError, match="queue_dtype changed"):
        SampleQueues(5, 6, 12).load_state_dict(state)


def test_uint8_queues_are_refused_for_data_that_are_not_uint8_pixels():
    from methods.base import DataSpec
    from methods.drifting.method import Drifting

    cfg = Drifting.Config(loss="production", conditional=True, noise_dim=None, queue_dtype="uint8")
    step = Drifting(cfg).cond_step
    latents = DataSpec("imagenet_latent", (4, 8, 8), 10, "images", (-1.0, 1.0), decoded_shape=(3, 64, 64))
    with pytest.raises(ValueError, match="queue_dtype=uint8 stores uint8 pixels"):
        step.check_data(latents, "")
    with pytest.raises(ValueError, match="method.queue_device must be one of"):
        Drifting(Drifting.Config(loss="production", conditional=True, queue_device="gpu"))
