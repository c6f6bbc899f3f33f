"""Claim (e): feature-space drifting beats raw-pixel drifting on 8x8 digits (PAPER.md 2.1, 10.3, 12.10).

``python -m bench.claims.drifting_digits [--seeds 0] [--steps 600] [--jobs 2] [--model mlp]``

1. Pre-trains the tiny MAE encoder once (``python -m bench.run task=pretrain_encoder data=digits``).
2. Trains two class-conditional drifting generators with training-time CFG and the same budget and
   generator: ``features`` (the default digits configuration: multi-scale encoder features plus the raw
   output) and ``raw`` (``method.encoder_path=null``: the production loss on the flattened pixels only).
3. Scores their samples at every evaluated guidance with a small CNN classifier trained here on the
   digits training split (the suite's domain-classifier metrics live on another branch; this script is
   self-contained): ``FD-cls``, the Frechet distance between classifier features of generated and real
   images (an offline FD, not FID), and ``acc``, the fraction of samples the classifier assigns to their
   conditioning label. The classifier's held-out accuracy is printed with them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

from bench.data.digits import all_digits, digits_arrays

CLASSIFIER_SEED = 0


class DigitCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                                  nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        f = self.body(x)
        return f, self.head(f)


def train_classifier(steps: int = 600) -> tuple[DigitCNN, float]:
    """A digits classifier (Adam, light shift augmentation); returns it and its held-out accuracy."""
    torch.manual_seed(CLASSIFIER_SEED)
    x_tr, y_tr, x_te, y_te = digits_arrays()
    net = DigitCNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(CLASSIFIER_SEED)
    for _ in range(steps):
        idx = torch.randint(len(x_tr), (128,), generator=g)
        x = x_tr[idx]
        shift = torch.randint(-1, 2, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        loss = nn.functional.cross_entropy(net(x)[1], y_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(x_te)[1].argmax(1) == y_te).float().mean())
    return net, acc


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean.real))


@torch.no_grad()
def score(net: DigitCNN, samples: np.ndarray, real_feats: np.ndarray) -> dict[str, float]:
    x = torch.from_numpy(samples).float().clamp(-1, 1)
    f, logits = net(x)
    labels = torch.arange(len(x)) % 10                 # bench.run's eval labels: classes in turn
    return {"FD-cls": frechet(f.numpy(), real_feats), "acc": float((logits.argmax(1) == labels).float().mean())}


def bench_run(args_list: list[str], threads: int) -> tuple[list[str], int, str]:
    cmd = [sys.executable, "-m", "bench.run", *args_list]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    lines = (p.stderr or p.stdout).strip().splitlines()
    return cmd, p.returncode, lines[-1] if lines else ""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--model", default="mlp", help="generator config (mlp or dit_digits)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results-dir", default="results/claims")
    args = ap.parse_args(argv)
    common = [f"results_dir={args.results_dir}", "train.progress=false"]
    cmd, code, last = bench_run(["task=pretrain_encoder", "data=digits", *common], args.threads)
    print(("ok   " if code == 0 else "FAIL ") + " ".join(cmd[2:]) + ("" if code == 0 else f"\n     {last}"))
    if code:
        sys.exit(1)
    variants = {"features": [], "raw": ["method.encoder_path=null"]}
    jobs = [(v, s, ["method=drifting", "data=digits", f"model={args.model}", f"seed={s}", f"train.steps={args.steps}",
                    f"tag=claime-{v}", *extra, *common]) for v, extra in variants.items() for s in args.seeds]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for cmd, code, last in pool.map(lambda j: bench_run(j[2], args.threads), jobs):
            print(("ok   " if code == 0 else "FAIL ") + " ".join(cmd[2:]) + ("" if code == 0 else f"\n     {last}"))
    net, acc = train_classifier()
    with torch.no_grad():
        real_feats = net(all_digits()[0])[0].numpy()
    floor_idx = np.random.default_rng(0).permutation(len(real_feats))
    half = len(real_feats) // 2
    print(f"\nclassifier held-out accuracy {acc:.3f}; FD-cls between two halves of the real digits "
          f"{frechet(real_feats[floor_idx[:half]], real_feats[floor_idx[half:]]):.3g} (floor)")
    print(f"{'variant':10s} {'seed':>4s} {'guidance':>8s} {'FD-cls':>10s} {'acc':>7s}")
    best: dict[str, list[float]] = {v: [] for v in variants}
    at1: dict[str, list[float]] = {v: [] for v in variants}
    for v, s, _ in jobs:
        run_dir = Path(args.results_dir) / "runs" / f"drifting-digits-{args.model}-s{s}-claime-{v}"
        fds = {}
        for path in sorted(run_dir.glob("samples_ema_0.99_nfe1_g*.npy")):
            g = float(path.stem.split("_g")[-1])
            m = score(net, np.load(path), real_feats)
            fds[g] = m["FD-cls"]
            print(f"{v:10s} {s:4d} {g:8g} {m['FD-cls']:10.4g} {m['acc']:7.3f}")
        if fds:
            best[v].append(min(fds.values()))
            at1[v].append(fds.get(1.0, float("nan")))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    holds = mean(best["features"]) < mean(best["raw"]) and mean(at1["features"]) < mean(at1["raw"])
    print(f"  best FD-cls over guidance: features {mean(best['features']):.4g} vs raw {mean(best['raw']):.4g}; "
          f"at alpha 1: {mean(at1['features']):.4g} vs {mean(at1['raw']):.4g} -> "
          f"{'HOLDS' if holds else 'FAILS'} (features lower in both)")


if __name__ == "__main__":
    main()
