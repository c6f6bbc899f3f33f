"""Speed and memory of the feature-space drifting loss: batched vs a per-class loop.

``python -m bench.perf.drift_loss [--classes 8 --gen 64 --pos 64 --unc 16 --device cpu]``

Builds the tiny digits encoder (random weights: the timing does not depend on them), extracts the feature
vectors of ``classes x gen`` generated and ``classes x (pos + unc)`` real 8x8 images, and times the loss
from the feature vectors to their gradients (forward + backward), for
- ``batched``: ``methods.drifting.features.feature_drift_loss`` (one ``drift_loss`` call per key over all
  (class, location) groups);
- ``loop``: ``looped_feature_loss`` below, a straightforward port that loops over classes (locations of a
  class batched), computing the same numbers (batch-wide S and lambda need two passes over the classes).
It checks that both give the same loss and gradients, prints both times, the ratio (target >= 3x), and
the peak memory of each (CUDA: allocator peak; CPU: peak resident-set growth during one evaluation, in
a fresh child process).
``--max-elements`` bounds the chunk of the batched loss: grow ``--image`` and compare peaks with and
without it to see the bound.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import threading
import time

import torch

from methods.drifting.encoder import ResNetConfig, ResNetEncoder
from methods.drifting.field import pairwise_distance
from methods.drifting.features import feature_drift_loss, feature_vectors
from methods.drifting.loss import DriftLossOptions


def _affinity(logits):
    return (logits.softmax(-1) * logits.softmax(-2)).clamp_min(1e-6).sqrt()


def looped_feature_loss(gen, pos, unc, classes, w_unc, temperatures=(0.02, 0.05, 0.2)):
    """Same numbers as ``feature_drift_loss`` (release semantics), one class at a time."""
    total = 0.0
    for key, g in gen.items():
        n, l, d = g.shape[0] // classes, g.shape[1], g.shape[2]
        m = unc[key].shape[0] // classes
        per_class = []
        for c in range(classes):
            gc = g[c * n:(c + 1) * n].transpose(0, 1)                          # [L, n, d]
            uc = unc[key][c * m:(c + 1) * m].transpose(0, 1)
            pc = pos[key][c * (pos[key].shape[0] // classes):(c + 1) * (pos[key].shape[0] // classes)].transpose(0, 1)
            targets = torch.cat([gc.detach(), uc, pc], 1)
            w = torch.cat([torch.ones(n), torch.full((m,), float(w_unc[c])), torch.ones(pc.shape[1])]).to(g)
            per_class.append((gc, targets, w))
        with torch.no_grad():
            num = sum((pairwise_distance(gc.detach(), t).clamp_min(1e-4) * w).sum() for gc, t, w in per_class)
            den = sum(w.sum() * l for _, _, w in per_class)
            scale = num / (n * den)
            cs, ds = (scale / d ** 0.5).clamp_min(1e-3), scale.clamp_min(1e-3)
            forces, sq = [], g.new_zeros(len(temperatures))
            for gc, t, w in per_class:
                dist = pairwise_distance(gc.detach(), t).clamp_min(1e-4) / ds
                dist[:, torch.arange(n), torch.arange(n)] += 100.0
                fs = []
                for k, tau in enumerate(temperatures):
                    a = _affinity(-dist / tau) * w
                    a_neg, a_pos = a[..., :n + m], a[..., n + m:]
                    coef = torch.cat([-a_neg * a_pos.sum(-1, keepdim=True), a_pos * a_neg.sum(-1, keepdim=True)], -1)
                    f = coef @ (t / cs) - coef.sum(-1, keepdim=True) * gc.detach() / cs
                    fs.append(f)
                    sq[k] += f.pow(2).sum()
                forces.append(fs)
            lam = (sq / (classes * l * n * d)).clamp_min(1e-8).sqrt()
        losses = []
        for (gc, _, _), fs in zip(per_class, forces):
            goal = gc.detach() / cs + sum(f / lam[k] for k, f in enumerate(fs))
            losses.append((gc / cs - goal).pow(2).mean(dim=(1, 2)))
        total = total + torch.cat(losses).mean()
    return total


def make_inputs(args, device):
    torch.manual_seed(0)
    enc = ResNetEncoder(1, ResNetConfig(width=args.width, layers=args.layers, gn_min_channels=4))  # as digits_tiny
    enc = enc.to(device).eval().requires_grad_(False)
    c, s = args.classes, args.image
    x_gen = torch.randn(c * args.gen, 1, s, s, device=device)
    with torch.no_grad():
        gen = {k: v.detach().requires_grad_() for k, v in feature_vectors(enc, x_gen).items()}
        pos = feature_vectors(enc, torch.randn(c * args.pos, 1, s, s, device=device))
        unc = feature_vectors(enc, torch.randn(c * args.unc, 1, s, s, device=device))
    w_unc = torch.rand(c, device=device) * 5
    return gen, pos, unc, w_unc


def run_once(which, gen, pos, unc, w_unc, classes, max_elements):
    for v in gen.values():
        v.grad = None
    if which == "batched":
        loss, _ = feature_drift_loss(gen, pos, unc, classes, w_unc, opts=DriftLossOptions(max_elements=max_elements))
    else:
        loss = looped_feature_loss(gen, pos, unc, classes, w_unc.cpu())
    loss.backward()
    return loss.detach(), {k: v.grad.clone() for k, v in gen.items()}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(which, args, device, inputs):
    run_once(which, *inputs, args.classes, args.max_elements)          # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(args.repeats):
        run_once(which, *inputs, args.classes, args.max_elements)
    _sync(device)
    return (time.perf_counter() - t) / args.repeats


class _RSSWatcher:
    """Peak resident-set growth of this process while it runs (polls /proc/self/statm every ms)."""

    def __init__(self):
        self.page = resource.getpagesize()
        self.base = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self) -> None:
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return max(self.peak, self._rss()) - self.base


def _peak_child(which, args, queue):
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    inputs = make_inputs(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run_once(which, *inputs, args.classes, args.max_elements)
        queue.put(torch.cuda.max_memory_allocated(device) - base)
    else:
        watcher = _RSSWatcher()
        run_once(which, *inputs, args.classes, args.max_elements)
        queue.put(watcher.stop())


def peak_memory(which, args) -> int:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(which, args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--pos", type=int, default=64)
    ap.add_argument("--unc", type=int, default=16)
    ap.add_argument("--image", type=int, default=8, help="image side (feature maps grow with it)")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--layers", type=int, nargs=4, default=[2, 2, 2, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-elements", type=int, default=None, help="chunk bound (default: by device)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    inputs = make_inputs(args, device)
    gen = inputs[0]
    l_b, g_b = run_once("batched", *inputs, args.classes, args.max_elements)
    l_l, g_l = run_once("loop", *inputs, args.classes, args.max_elements)
    err = max(float((g_b[k] - g_l[k]).norm() / g_l[k].norm().clamp_min(1e-30)) for k in g_b)
    print(f"shapes: {args.classes} classes x {args.gen} gen, {args.pos} pos, {args.unc} uncond; {len(gen)} keys; "
          f"{args.image}x{args.image} images, encoder width {args.width} layers {args.layers}; device {device}, "
          f"{args.threads} threads")
    print(f"agreement: loss {float(l_b):.6g} vs {float(l_l):.6g}; max relative gradient error {err:.2e}")
    t_b, t_l = timed("batched", args, device, inputs), timed("loop", args, device, inputs)
    print(f"batched: {t_b * 1e3:.1f} ms   loop: {t_l * 1e3:.1f} ms   (forward + backward, mean of {args.repeats})")
    if not args.no_memory:
        m_b, m_l = peak_memory("batched", args), peak_memory("loop", args)
        print(f"peak memory: batched {m_b / 2**20:.1f} MiB   loop {m_l / 2**20:.1f} MiB "
              f"(max_elements {args.max_elements or 'by device'})")
    print(f"speed-up (loop / batched): {t_l / t_b:.2f}x")


if __name__ == "__main__":
    main()
