"""Files a run leaves in ``results/runs/<run_id>/`` besides its checkpoints, named in one place.

The report reads them with numpy and json only (it never imports torch):

- ``train_log.jsonl``: one JSON row per log interval (step, images, loss, lr, grad_norm, images_per_s,
  wall_s and the method's diagnostics), written by ``methods/harness/trainer.py``;
- ``eval_log.jsonl``: one JSON row per quality check during training (step, images, the check's metrics,
  a collapse warning or null), written by ``bench/train_quality.py``;
- ``samples_<weights>_nfe<N>_g<G>.npy``: the evaluated samples of one evaluation point;
- ``reference.npy``: the first rows of the data's reference set, drawn as the backdrop of sample plots;
- ``adm/samples_<point>.npz``: an evaluation point's samples for the ADM evaluator (``eval.adm_samples``);
- ``memorisation_<point>.npz``: generated images beside their nearest training images (``eval.memorisation``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"
REFERENCE = "reference.npy"
REFERENCE_ROWS = {"points": 2500, "images": 64}     # enough for a scatter backdrop or an 8x8 grid
_SAMPLES = re.compile(r"samples_(?P<weights>.+)_nfe(?P<nfe>\d+)_g(?P<guidance>[0-9.e+-]+)\.npy")


def samples_name(weights: str, nfe: int, guidance: float) -> str:
    return f"samples_{weights}_nfe{nfe}_g{guidance:g}.npy"


def point_name(weights: str, nfe: int, guidance: float, n: int, step: int | None) -> str:
    """An evaluation point with its sample count and checkpoint step (None: the run's final weights)."""
    return f"{weights}_nfe{nfe}_g{guidance:g}_n{n}" + ("" if step is None else f"_step{step}")


def adm_samples_name(weights: str, nfe: int, guidance: float, n: int, step: int | None) -> str:
    return f"samples_{point_name(weights, nfe, guidance, n, step)}.npz"


def memorisation_name(weights: str, nfe: int, guidance: float, n: int, step: int | None) -> str:
    return f"memorisation_{point_name(weights, nfe, guidance, n, step)}.npz"


def parse_samples_name(name: str) -> tuple[str, int, float] | None:
    """(weights, nfe, guidance) of a samples file name, or None for other files."""
    m = _SAMPLES.fullmatch(name)
    return (m["weights"], int(m["nfe"]), float(m["guidance"])) if m else None


def save_reference(run_dir: Path, reference: Callable[[int], np.ndarray], kind: str) -> Path:
    """Keep the first rows of the reference set beside the samples, for data of ``kind`` ``points`` or
    ``images``: ``reference(rows)`` is asked for only the rows kept (an ImageNet reference of 50,000 crops is
    never loaded for a 64-image grid), and only when the file is missing."""
    path = Path(run_dir) / REFERENCE
    if not path.exists():
        rows = REFERENCE_ROWS.get(kind, 64)
        np.save(path, np.asarray(reference(rows)[:rows], dtype=np.float32))
    return path
