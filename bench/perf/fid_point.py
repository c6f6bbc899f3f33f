"""``python -m bench.perf.fid_point [--samples 50000] [--size 256] [--device cuda]``: the cost of one FID-50K
point on synthetic samples at the real sizes, stage by stage, on one device.

Synthetic uint8 images (no generator: the sampling cost is the recipe's, measured by ``bench.sampling``)
go through torch-fidelity's Inception (``--weights PATH``, default: randomly initialised here, which costs
the same as the real weights), then the statistics, FID against a reference, Inception Score (10 splits)
and improved precision/recall (k = 3) against a 10,000-image reference batch, as ``eval=imagenet`` computes
them. Prints images/s of the feature pass, seconds per stage and the GPU-minutes of the point.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bench.metrics import fid_helper
from bench.metrics.features import frechet_distance, inception_score
from bench.metrics.prdc import precision_recall
from bench.metrics.reference import statistics


def random_inception(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's Inception with random weights, its batch-norm statistics set from one batch of
    random images layer by layer (activations of order one through all 94 convolutions); saved to ``path``."""
    torch.manual_seed(seed)
    net = fid_helper._Skeleton.build()

    def calibrate(bn, inputs):
        x = inputs[0]
        bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        bn.running_var.copy_(x.var(dim=(0, 2, 3)) + 1e-3)

    hooks = [m.register_forward_pre_hook(calibrate) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        net(torch.randint(0, 256, (4, 3, 64, 64), generator=torch.Generator().manual_seed(seed + 1), dtype=torch.uint8))
    for h in hooks:
        h.remove()
    torch.save(net.state_dict(), path)
    return Path(path)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def features(net, n: int, size: int, batch: int, device: torch.device,
             seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    g = torch.Generator(device=device).manual_seed(seed)
    pool, logits = [], []
    net(torch.randint(0, 256, (min(batch, n), 3, size, size), generator=g, device=device, dtype=torch.uint8))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        x = torch.randint(0, 256, (min(batch, n - start), 3, size, size), generator=g, device=device, dtype=torch.uint8)
        f, lg = net(x)
        pool.append(f.float())
        logits.append(lg.float())
    _sync(device)
    return torch.cat(pool), torch.cat(logits), time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.fid_point", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--reference", type=int, default=10_000, help="images of the reference batch (ADM: 10,000)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--weights", default=None, help="a torch-fidelity inception-v3-compat state dict")
    args = p.parse_args()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as d:
        weights = str(args.weights or random_inception(Path(d) / "inception.pth"))
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=weights).to(device).eval()
    gen, logits, t_gen = features(net, args.samples, args.size, args.batch, device, 0)
    ref, _, t_ref = features(net, args.reference, args.size, args.batch, device, 1)
    t = {}
    t0 = time.perf_counter()
    fid = frechet_distance(gen.cpu(), b_stats=statistics(ref.cpu()))
    t["statistics + FID"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    isc = inception_score(logits.cpu())["value"]
    t["IS (10 splits)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pr = precision_recall(gen, ref, 3, 10_000)
    _sync(device)
    t["precision/recall (k=3)"] = time.perf_counter() - t0
    total = t_gen + sum(t.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, {args.samples} samples at {args.size}x{args.size}, batch {args.batch}")
    print(f"Inception features: {args.samples / t_gen:.0f} images/s ({t_gen:.1f} s); reference {args.reference} "
          f"images {t_ref:.1f} s (cached by the suite after the first point)")
    for k, v in t.items():
        print(f"{k}: {v:.1f} s")
    print(f"one point without sampling: {total:.1f} s = {total / 60:.2f} device-minutes "
          f"(values on synthetic images: FID {fid:.1f}, IS {isc:.2f}, precision {pr['precision']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
