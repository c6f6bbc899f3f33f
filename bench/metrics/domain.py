"""The ``domain`` feature extractor: a small classifier trained by the suite on the dataset itself.

It gives an offline Frechet distance in its own features, ``fd_domain`` ("FD-domain", never FID:
PROTOCOLS.md), with KID and precision/recall/density/coverage in the same features, and it labels samples
for ``class_acc``, ``classes_covered`` and the stacked-digits modes (``bench.metrics.classes``).

- What it learns comes from the data source (``ClassifierData``, ``bench.data.tensor_source``): digits and
  stacked_digits the fixed train split of scikit-learn's 8x8 digits, held-out accuracy on its test split
  (for stacked digits the digit classifier reads each channel, VEEGAN's Stacked-MNIST protocol, features
  concatenated); mnist and cifar10 their official train and test splits (``bench.data.vision``).
- Training uses a fixed seed, on uint8-quantised images (the form torch-fidelity feeds it), on the
  evaluation device (deterministic on the CPU).
  The result is cached in ``<cache>/domain/`` under a key hashing the training data, architecture and
  recipe; the record names its sha256 and held-out accuracy.
- It is registered with torch-fidelity (``register_feature_extractor("driftbench-domain", ...)``), so
  torch-fidelity's own ``calculate_metrics`` runs on it as on Inception.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from bench.metrics.fidelity import FidelityExtractor, to_uint8_rgb
from bench.metrics.registry import MetricOptions
from methods.harness.atomic import write_file_atomic

FIDELITY_NAME = "driftbench-domain"


@dataclass(frozen=True)
class Recipe:
    epochs: int = 8          # ~99% held-out accuracy on digits; ~10 s on one CPU thread
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 32
    seed: int = 0


class SmallCNN(nn.Module):
    """conv(w)-conv(2w)-pool-conv(4w), batch norm and ReLU, global average pool -> 4w features -> logits.

    ``stem_pool`` adds a 2x2 max-pool after the first conv (images above 16 px: ~4x less compute)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, stem_pool: bool = False):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        stem = [nn.MaxPool2d(2)] if stem_pool else []
        self.body = nn.Sequential(*block(in_channels, width), *stem, *block(width, 2 * width), nn.MaxPool2d(2),
                                  *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return h, self.head(h)


def dequantise(u: Tensor) -> Tensor:
    return u.float() / 127.5 - 1.0


def train_classifier(x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, num_classes: int,
                     recipe: Recipe, device: str = "cpu", stem_pool: bool = False) -> tuple[SmallCNN, float]:
    """Train on uint8 images ``[N, C, H, W]``; returns the network (on the CPU) and its held-out accuracy.

    CPU training runs on one thread: deterministic, and for these small convolutions on small shared CPUs
    much faster than two threads (28x28 MNIST batches: 0.12 s against 0.65 s per step here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x_tr, y_tr, x_te, y_te, num_classes, recipe, torch.device(device), stem_pool)
    finally:
        torch.set_num_threads(threads)


def _train(x_tr, y_tr, x_te, y_te, num_classes, recipe, device, stem_pool) -> tuple[SmallCNN, float]:
    g = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    net = SmallCNN(x_tr.shape[1], num_classes, recipe.width, stem_pool).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * ((len(x_tr) + recipe.batch_size - 1) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=steps)
    net.train()
    for _ in range(recipe.epochs):
        for idx in torch.randperm(len(x_tr), generator=g).split(recipe.batch_size):
            loss = F.cross_entropy(net(dequantise(x_tr[idx].to(device)))[1], y_tr[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(dequantise(x.to(device)))[1].argmax(1).cpu() for x in x_te.split(1000)])
    return net.cpu(), (pred == y_te).float().mean().item()


def no_classifier(data) -> str | None:
    """Why ``data`` has no domain classifier (None when it has one)."""
    if getattr(data, "classifier", None) is None:
        return f"no domain classifier for data '{data.spec.name}' (it needs labelled images: digits, " \
               f"stacked_digits, mnist, cifar10)"
    return None


def classifier_file(data, cache_root: Path, device: str = "cpu") -> Path:
    """The trained classifier for ``data`` (trained once on ``device``, then cached)."""
    if no_classifier(data):
        raise ValueError(no_classifier(data))
    c = data.classifier
    channels = slice(None) if c.mode == "rgb" else slice(0, 1)       # grey images: one channel
    x_tr, y_tr, x_te, y_te = c.split()
    x_tr, x_te = (to_uint8_rgb(x, data.spec.value_range)[:, channels].contiguous() for x in (x_tr, x_te))
    recipe = Recipe(epochs=max(c.epochs, math.ceil(c.min_steps / math.ceil(len(x_tr) / Recipe.batch_size))))
    stem_pool = min(x_tr.shape[2:]) > 16
    arch = "SmallCNN+stem_pool" if stem_pool else "SmallCNN"
    path = cache_root / "domain" / f"{c.key}-{weights_key(recipe, arch, c.num_classes, device, (x_tr, y_tr, x_te, y_te))}.pt"
    if not path.exists():
        net, acc = train_classifier(x_tr, y_tr, x_te, y_te, c.num_classes, recipe, device, stem_pool)
        _save_atomic(path, {"state_dict": net.state_dict(), "in_channels": x_tr.shape[1], "num_classes": c.num_classes,
                            "width": recipe.width, "test_accuracy": acc, "n_train": len(x_tr), "n_test": len(x_te),
                            "trained_on": c.description, "recipe": asdict(recipe),  # optional keys: older files stay valid
                            "trained_with": trained_with(device),
                            **({"mode": "rgb"} if c.mode == "rgb" else {}), **({"stem_pool": True} if stem_pool else {})})
    return path if c.mode != "stacked" else _with_mode(path, "stacked")


def trained_with(device: str) -> dict:
    """What changes the trained weights besides data and recipe: the device kind (CPU and CUDA kernels
    differ) and the torch version (kernels and initialisation change between releases)."""
    return {"device": torch.device(device).type, "torch": torch.__version__.split("+")[0]}


def weights_key(recipe: Recipe, arch: str, num_classes: int, device: str, tensors) -> str:
    """The cache key of a trained classifier: everything its weights depend on."""
    h = hashlib.sha256(json.dumps({"v": 2, "recipe": asdict(recipe), "arch": arch, "classes": num_classes,
                                   **trained_with(device)}, sort_keys=True).encode())
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _save_atomic(path: Path, entry: dict) -> None:
    """Concurrent jobs may train the same classifier: each writes its own temporary file, then renames."""
    write_file_atomic(path, lambda f: torch.save(entry, f))


def _with_mode(path: Path, mode: str) -> Path:
    """A copy of the classifier file that reads ``mode`` inputs (same weights, own hash)."""
    out = path.with_name(f"{path.stem}-{mode}.pt")
    if not out.exists():
        entry = torch.load(path, weights_only=True)
        entry["mode"] = mode
        _save_atomic(out, entry)
    return out


class DomainFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over a trained ``SmallCNN``: uint8 ``[B, 3, H, W]`` -> (features, logits).

    Mode "grey" reads the mean of the channels (grey images repeated to RGB), "rgb" the three channels;
    "stacked" reads each channel as its own digit and concatenates features and logits per channel."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{FIDELITY_NAME} needs feature_extractor_weights_path: a classifier file "
                             f"from bench.metrics.domain.classifier_file")
        entry = torch.load(feature_extractor_weights_path, map_location="cpu", weights_only=True)
        self.net = SmallCNN(entry["in_channels"], entry["num_classes"], entry["width"], entry.get("stem_pool", False))
        self.net.load_state_dict(entry["state_dict"])
        self.mode = entry.get("mode", "grey")
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        b = x.shape[0]
        v = dequantise(x)
        if self.mode == "grey":
            v = v.mean(dim=1, keepdim=True)
        elif self.mode == "stacked":
            v = v.reshape(b * x.shape[1], 1, *x.shape[2:])
        feats, logits = self.net(v)
        out = {"features": feats.reshape(b, -1), "logits": logits.reshape(b, -1)}
        return tuple(out[f] for f in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


if FIDELITY_NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(FIDELITY_NAME, DomainFeatureExtractor)


class DomainExtractor(FidelityExtractor):
    def __init__(self, data, options: MetricOptions):
        from bench.metrics.fid_helper import file_hash

        path = classifier_file(data, options.cache_root(), options.device)
        entry = torch.load(path, weights_only=True)
        info = {"classifier_test_accuracy": round(entry["test_accuracy"], 4), "classifier_trained_on":
                entry["trained_on"], "classifier_n_test": entry["n_test"], "classifier_mode": entry.get("mode", "grey")}
        super().__init__(FIDELITY_NAME, {"features": "features", "logits": "logits"}, str(path), file_hash(path),
                         info, data.spec.value_range, options.device, name=f"domain-classifier:{data.spec.name}")
        self.num_classes = entry["num_classes"]
