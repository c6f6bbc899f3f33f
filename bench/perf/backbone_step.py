"""``python -m bench.perf.backbone_step model=NAME [data=...] [--batch 256] [--repeats 10] [--threads N]
[--device cpu|cuda] [--precision fp32|bf16]``: time one forward+backward of a backbone.

The backbone is built as ``bench.params`` builds it (the model's nominal input, or ``data=...``; the
drifting generator's conditioning y/alpha/style unless ``method=...``), with random inputs and
conditions; the loss is the mean square of the output (after the zero-initialised layers are given
small random weights, so every parameter gets a gradient). Warm-up steps are excluded, the device is
synchronised, and the median over ``--repeats`` is printed with images per second.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from bench.config import ConfigError
from bench.params import build
from methods.base import count_parameters


def random_cond(net, io, batch: int, device) -> dict:
    """Random conditions of the kinds ``io`` asks for (styles only if the backbone has style tokens)."""
    cond = {}
    for key in io.cond:
        if key == "y":
            cond[key] = torch.randint(io.num_classes + 1, (batch,), device=device)
        elif key == "alpha":
            cond[key] = 1 + 3 * torch.rand(batch, device=device)
        elif key in ("t", "r"):
            cond[key] = torch.rand(batch, device=device)
        elif key == "style" and getattr(net, "style_shape", None):
            n, k = net.style_shape
            cond[key] = torch.randint(k, (batch, n), device=device)
    return cond


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf.backbone_step")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args, overrides = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        net, io, source = build(overrides, args.device)
    except ConfigError as e:
        print(f"bench.perf.backbone_step: error: {e}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    with torch.no_grad():   # give the zero-initialised adaLN/output layers weights, as after some training
        for p in net.parameters():
            if not p.any():
                p.normal_(std=0.02)
    x = torch.randn(args.batch, *io.in_shape, device=device)
    cond = random_cond(net, io, args.batch, device)
    times, cpu = [], []
    for i in range(args.warmup + args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = net(x, cond).float().square().mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    print(f"{count_parameters(net):,} parameters; {source}; batch {args.batch}, {args.precision}, {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"forward+backward: median {med * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}) "
          f"over {len(times)}; {args.batch / med:,.0f} images/s")
    print(f"process CPU time per step: median {statistics.median(cpu) * 1e3:.1f} ms (wall above is inflated "
          f"when other processes share the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
