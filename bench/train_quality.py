"""Quality during training: a cheap evaluation every ``train.eval_every`` images, as a trainer hook.

The release evaluates FID during training (``train.eval_per_step``, its README's ablation trajectory
35.2 -> 8.34 over 30k steps); driftbench does the same for every method, at a cost small next to training:

- ``train.eval_samples`` samples (default 500) with the first evaluated weights (``eval.weights``, e.g.
  ``ema_0.99``), noise seeds ``eval.seed ..`` (the same noise at every point, so the curve follows the
  model), the first ``eval.guidance`` and the largest NFE of the run's grid up to ``MAX_NFE``;
- metrics: on 2-D toys modes captured, high-quality fraction and energy distance; on labelled images the
  Frechet distance in the domain classifier's features (``fd_domain``) and classes covered (stacked digits:
  digit triples); elsewhere Inception FID where the run measures it (a few hundred samples: biased upward,
  only comparable with itself); the watch only follows metrics the run's evaluation measures;
- a collapse warning when modes, classes or triples covered fall below ``train.collapse_below`` of what a
  perfect sampler of as many samples covers (K (1 - (1 - 1/K)^n) of K equally likely modes): printed,
  written in the row and kept in the run record (``train_quality``).

Rows go to ``results/runs/<run_id>/eval_log.jsonl`` (``bench.artifacts.EVAL_LOG``), beside the training
curve; a resumed run drops the rows written after its checkpoint, as the training log does. The hook runs
on every rank; rank 0 evaluates. Sampling draws no training randomness (the trainer reseeds every step), so
a run trains to the same weights with the evaluation on or off. Its seconds count in the training
wall-clock and are reported apart (``train_quality.seconds``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from bench.artifacts import EVAL_LOG
from bench.metrics import Evaluation
from bench.sampling import generate

WATCHED = ("modes", "hq_frac", "energy", "fd_domain", "classes_covered", "stacked_modes")
FALLBACK = "fid"                 # where no domain classifier exists (ImageNet)
MAX_NFE = 16


def covered_by_perfect_sampler(k: int, n: int) -> float:
    """Expected number of distinct modes among n draws from k equally likely modes."""
    return k * (1.0 - (1.0 - 1.0 / k) ** n)


class QualityWatch:
    def __init__(self, spec, run_dir: Path, names: list[str]):
        self.spec, self.names = spec, names
        self.path = Path(run_dir) / EVAL_LOG
        cfg = spec.train
        self.every, self.n, self.threshold = cfg.eval_every, cfg.eval_samples, cfg.collapse_below
        self.weights, self.guidance = spec.eval.weights[0], float(spec.eval.guidance[0])
        grid = sorted({nfe for _, nfe, _ in spec.points})
        self.nfe = max([n for n in grid if n <= MAX_NFE] or grid[:1])
        self.started = False
        self.sources: dict[str, dict] = {}

    @classmethod
    def of(cls, spec, run_dir: Path) -> "QualityWatch | None":
        """The watch of a run, or None when ``train.eval_every`` is 0 or the run's evaluation measures no
        watched metric (the watch never asks for a metric the run does not already measure)."""
        if not spec.train.eval_every:
            return None
        measured = spec.metrics                  # what the run's evaluation measures (checked, available)
        names = [m for m in WATCHED if m in measured]
        if "fd_domain" not in names and FALLBACK in measured:
            names.append(FALLBACK)
        return cls(spec, run_dir, names) if names else None

    def rows(self) -> list[dict]:
        return [json.loads(r) for r in self.path.read_text().splitlines() if r.strip()] if self.path.exists() else []

    def _resume(self, step: int) -> None:
        """Keep the rows of steps before ``step`` (a resumed run recomputes the later ones)."""
        self.started = True
        if self.path.exists():
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows() if r["step"] < step))

    def due(self, images: int, batch: int, last: bool) -> bool:
        return last or images // self.every > (images - batch) // self.every

    def __call__(self, trainer) -> None:
        if not trainer.env.is_main:
            return
        if not self.started:
            self._resume(trainer.step)
        if not self.due(trainer.images, trainer.cfg.batch_size, trainer.step == trainer.cfg.steps):
            return
        t0 = time.perf_counter()
        row = {"step": trainer.step, "images": trainer.images, "weights": self.weights, "nfe": self.nfe,
               "guidance": self.guidance, "n_samples": self.n, **self.evaluate(trainer)}
        row["collapse"] = self.collapse(row)
        row["seconds"] = round(time.perf_counter() - t0, 3)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        shown = ", ".join(f"{m} {row[m]:.4g}" for m in self.names if row.get(m) is not None)
        trainer.log(f"quality at step {trainer.step} ({trainer.images:,} images): {shown}")
        if row["collapse"]:
            trainer.log(row["collapse"])

    def evaluate(self, trainer) -> dict:
        spec = self.spec
        net = trainer.net if self.weights == "raw" else trainer.ema.model(self.weights)
        was_training = net.training
        labels = torch.arange(self.n) % spec.data.spec.num_classes if spec.method.conditional else None
        evaluation = Evaluation(self.names, spec.data, self.n, spec.eval.metric_options(trainer.env.device))
        try:
            generate(spec.method, net, self.n, spec.eval.seed, self.nfe, self.guidance, spec.eval.batch_size,
                     labels=labels, latency_repeats=0, on_batch=evaluation.add, keep=0,
                     decode=getattr(spec.data, "decode", None))        # latents: metrics see decoded images
        finally:
            net.train(was_training)
        result = evaluation.finish()
        self.sources = result.sources
        return dict(result.values)

    def collapse(self, row: dict) -> str | None:
        out = []
        for m in ("modes", "classes_covered", "stacked_modes"):
            if m not in self.names or row.get(m) is None:
                continue
            src = self.sources.get(m, {})
            k = src.get("num_classes") or src.get("num_modes") or len(self.spec.data.modes.means)
            expected = covered_by_perfect_sampler(int(k), self.n)
            if row[m] < self.threshold * expected:
                out.append(f"{m} {row[m]:g} of {k} (a perfect sampler of {self.n} covers {expected:.1f}; "
                           f"threshold {self.threshold:g} x that)")
        return (f"collapse warning at step {row['step']} ({row['images']:,} images): " + "; ".join(out)) if out \
            else None

    def summary(self) -> dict:
        """What the run record keeps: settings, number of points, collapse warnings, seconds spent."""
        rows = self.rows()
        return {"every_images": self.every, "n_samples": self.n, "weights": self.weights, "nfe": self.nfe,
                "guidance": self.guidance, "metrics": self.names, "collapse_below": self.threshold,
                "points": len(rows), "collapse_warnings": [r["collapse"] for r in rows if r.get("collapse")],
                "seconds": round(sum(r["seconds"] for r in rows), 3),
                "log": EVAL_LOG}
