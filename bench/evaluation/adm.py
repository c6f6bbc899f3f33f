"""Samples in the layout of the ADM evaluator (guided-diffusion's ``evaluations/evaluator.py``), so the
field's evaluator can run on exactly the images we measured, and its numbers recorded beside ours.

Layout (guided-diffusion's ``image_sample.py``): one ``.npz`` with ``arr_0`` uint8 ``[N, H, W, 3]`` and,
for class-conditional samples, ``arr_1`` int64 labels ``[N]``. The images are quantised by the same
function our Inception metrics use (``bench.metrics.fidelity.to_uint8_rgb``, ``eval.quantize``), so our
FID is computed on these very bytes.

With several processes no rank holds all images: each rank writes its shard into a memory-mapped part
(``ShardWriter``), and rank 0 streams the parts, in rank order, into the ``.npz`` (``assemble``) without
loading them (a FID-50K set at 256 x 256 is 9.8 GB). ``samples_sha256`` hashes the image bytes and shape,
not the zip container, so the check in ``import-adm-result`` does not depend on zip timestamps.
"""
from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
from torch import Tensor

from bench.metrics.fidelity import to_uint8_rgb

COPY_ROWS = 1024                 # images per chunk when streaming parts into the .npz
# Lines the ADM evaluator prints (evaluations/evaluator.py, main): "Inception Score: 254.1" etc.
ADM_LINES = {"Inception Score": "is", "FID": "fid", "sFID": "sfid", "Precision": "precision", "Recall": "recall"}
_LINE = re.compile(r"^\s*(Inception Score|FID|sFID|Precision|Recall):\s*([-+0-9.eEnaif]+)\s*$")


def to_nhwc_uint8(x: Tensor, value_range, quantize: str) -> np.ndarray:
    return to_uint8_rgb(x, value_range, quantize).permute(0, 2, 3, 1).contiguous().numpy()


class ShardWriter:
    """One rank's images, written as they are generated into ``path`` (an ``.npy`` memory map)."""

    def __init__(self, path: Path, rows: int, value_range, quantize: str):
        self.path, self.rows, self.value_range, self.quantize = Path(path), rows, value_range, quantize
        self.array, self.filled = None, 0

    def add(self, x: Tensor) -> None:
        img = to_nhwc_uint8(x, self.value_range, self.quantize)
        if self.array is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8,
                                                   shape=(self.rows, *img.shape[1:]))
        self.array[self.filled:self.filled + len(img)] = img
        self.filled += len(img)

    def close(self) -> Path:
        if self.filled != self.rows:
            raise RuntimeError(f"{self.path}: {self.filled} of {self.rows} images written")
        self.array.flush()
        del self.array
        return self.path


def assemble(out: Path, parts: list[Path], labels: np.ndarray | None) -> str:
    """Stream the rank parts (in order) into ``out`` as ``arr_0`` (+ ``arr_1`` labels); returns
    ``samples_sha256``. The parts are removed afterwards."""
    arrays = [np.load(p, mmap_mode="r") for p in parts]
    n, shape = sum(len(a) for a in arrays), arrays[0].shape[1:]
    digest = hashlib.sha256(str(("uint8", (n, *shape))).encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("arr_0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, {"descr": "|u1", "fortran_order": False, "shape": (n, *shape)})
            for a in arrays:
                for i in range(0, len(a), COPY_ROWS):
                    chunk = np.ascontiguousarray(a[i:i + COPY_ROWS]).tobytes()
                    digest.update(chunk)
                    f.write(chunk)
        if labels is not None:
            with zf.open("arr_1.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(labels, dtype=np.int64))
    tmp.replace(out)
    del arrays
    for p in parts:
        p.unlink(missing_ok=True)
    return digest.hexdigest()


def samples_sha256(path: Path) -> str:
    """``samples_sha256`` of an ADM ``.npz`` (its ``arr_0`` bytes and shape), read in chunks."""
    with zipfile.ZipFile(path) as zf, zf.open("arr_0.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        if dtype != np.uint8 or len(shape) != 4:
            raise ValueError(f"{path}: arr_0 is {dtype} {shape}, not uint8 [N, H, W, 3] images")
        digest = hashlib.sha256(str(("uint8", tuple(shape))).encode())
        row = int(np.prod(shape[1:]))
        while chunk := f.read(row * COPY_ROWS):
            digest.update(chunk)
    return digest.hexdigest()


def parse_adm_log(text: str) -> dict[str, float]:
    """The numbers the ADM evaluator printed (``is``, ``fid``, ``sfid``, ``precision``, ``recall``)."""
    found = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            found[ADM_LINES[m[1]]] = float(m[2])
    if "fid" not in found:
        raise ValueError("no 'FID: <number>' line in the evaluator's output; pass what "
                         "guided-diffusion's evaluations/evaluator.py printed")
    return found
