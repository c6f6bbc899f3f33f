"""The sharding primitives on a real two-process gloo group (spawned here): shards tile [0, n) in order,
rows come back to rank 0 in sample order whatever their sizes, objects are gathered and broadcast."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.evaluation.shard import broadcast, gather_objects, gather_rows, shard
from methods.harness.dist import DistEnv


def test_shards_tile_the_index_range():
    for n, world in ((10, 3), (2, 2), (301, 2), (7, 4)):
        parts = [shard(n, DistEnv(rank=r, world=world)) for r in range(world)]
        assert [i for p in parts for i in p] == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    env = DistEnv(rank=rank, world=2)
    n = 23
    rows = shard(n, env)
    local = torch.arange(n, dtype=torch.float32)[rows.start:rows.stop, None].repeat(1, 3)
    import bench.evaluation.shard as sh

    sh.GATHER_ROWS = 5                              # several collectives per gather, a short last one
    got = gather_rows(local, env)
    labels = gather_rows(torch.arange(rows.start, rows.stop), env)
    objs = gather_objects({"rank": rank, "n": len(rows)}, env)
    plan = broadcast([1.5, 2.0] if rank == 0 else None, env)
    if rank == 0:
        torch.save({"rows": got, "labels": labels, "objs": objs, "plan": plan}, out)
    else:
        assert got is None and labels is None and objs is None and plan == [1.5, 2.0]
    dist.destroy_process_group()


def test_gather_and_broadcast_on_two_processes(tmp_path):
    out = tmp_path / "out.pt"
    mp.spawn(_worker, args=(f"file://{tmp_path / 'store'}", str(out)), nprocs=2, join=True)
    res = torch.load(out)
    torch.testing.assert_close(res["rows"], torch.arange(23, dtype=torch.float32)[:, None].repeat(1, 3))
    assert res["labels"].tolist() == list(range(23))
    assert res["objs"] == [{"rank": 0, "n": 11}, {"rank": 1, "n": 12}] and res["plan"] == [1.5, 2.0]
