"""The training log's window on a real two-process gloo group (spawned here): every rank logs the mean
over processes of the per-rank losses, not its own share."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from methods.harness.device_log import DeviceWindow


def _worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    w = DeviceWindow(torch.device("cpu"), world=2)
    for step, loss in enumerate((1.0, 3.0) if rank == 0 else (5.0, 7.0)):
        w.add(step, torch.tensor(loss), torch.tensor(0.5), {"drift_sq": torch.tensor(10.0 * (rank + 1))}, 4)
    means, _, bad = w.read()
    torch.save(means, f"{out}.{rank}")
    dist.destroy_process_group()


def test_logged_means_are_over_processes(tmp_path):
    out = tmp_path / "means"
    mp.spawn(_worker, args=(f"file://{tmp_path / 'store'}", str(out)), nprocs=2, join=True)
    for rank in (0, 1):
        means = torch.load(f"{out}.{rank}")
        assert means == {"loss": 4.0, "grad_norm": 0.5, "drift_sq": 15.0}, means


def test_one_process_logs_its_own_means():
    w = DeviceWindow(torch.device("cpu"), world=1)
    w.add(0, torch.tensor(2.0), torch.tensor(1.0), {}, 4)
    w.add(1, torch.tensor(4.0), torch.tensor(3.0), {}, 4)
    assert w.read()[0] == {"loss": 3.0, "grad_norm": 2.0}
