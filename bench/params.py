"""``python -m bench.params model=NAME [data=NAME] [method=NAME] [key=value ...]`` or ``recipe=NAME``: count a
backbone's parameters.

Composes the run configuration exactly as ``bench.run`` does (so every override and every error
message are the same), builds the backbone on PyTorch's ``meta`` device (no memory, no data needed,
under a second even for L/16) and prints a table of its top-level components, then the total
parameter count as a bare integer on the LAST line (``... | tail -n 1`` gives the number).

Which input the backbone is built for:
- shape and classes: the data named by ``data=...`` if given; otherwise the model config's
  ``nominal_shape`` / ``nominal_classes`` (the paper configs know 4x32x32 latents or 3x256x256
  pixels with 1000 ImageNet classes); otherwise the default data of ``bench/conf/config.yaml``.
- interface: with ``method=...`` or a ``recipe=...``, exactly the ``BackboneIO`` that the composed method
  asks for (what a run builds; a recipe's data need not be on this machine: its model's nominal input
  stands in); otherwise the paper's drifting generator (PAPER.md section 4): noise of the output's shape
  in, conditioned on class ``y`` (when the data has classes), CFG scale ``alpha`` and style tokens.
"""
from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from bench.config import ConfigError, _build, compose_config, plain_config, typed
from bench.data import dataset_entry
from methods.backbones import build_backbone
from methods.base import BackboneIO, DataSpec, count_parameters
from methods.registry import backbone_class, method_class


def _named(overrides: list[str], key: str) -> str | None:
    """The value of a plain ``key=value`` override, if the command line has one."""
    for o in overrides:
        k, sep, v = o.lstrip("+~").partition("=")
        if sep and k == key:
            return v
    return None


def backbone_io(plain: dict[str, Any], overrides: list[str]) -> tuple[BackboneIO, str]:
    """The interface to build for, and a one-line description of where its shape came from."""
    model = plain["model"]
    nominal = model.get("nominal_shape")
    recipe = plain["choices"].get("recipe")
    name = _named(overrides, "model") or plain["choices"].get("model") or model["name"]
    if _named(overrides, "data") is None and nominal:
        shape, classes = tuple(int(s) for s in nominal), int(model.get("nominal_classes", 0))
        source = f"nominal input of model '{name}'"
        spec = DataSpec(name=plain["data"]["name"], shape=shape, num_classes=classes, kind="images") if recipe else None
    else:
        entry = _build("data", dataset_entry, plain["data"]["name"])
        spec = _build("data", entry.build, typed("data", entry.config, plain["data"])).spec
        shape, classes = tuple(spec.shape), spec.num_classes
        source = f"data '{plain['data']['name']}'"
    if _named(overrides, "method") is not None or recipe:
        if spec is None:
            raise ConfigError("method=... needs data=... too (a method's interface depends on the data)")
        m_cls = _build("method", method_class, plain["method"]["name"])
        method = _build("method", m_cls, typed("method", m_cls.Config, plain["method"]))
        if hasattr(method, "configure_backbone"):       # as bench.config.prepare_train does
            method.configure_backbone(model)
        io = _build("method", method.backbone_io, spec)
        where = f"recipe '{recipe}'" if recipe else f"method '{plain['method']['name']}'"
        return io, f"{source}, interface of {where}"
    cond = (("y",) if classes else ()) + ("alpha", "style")
    io = BackboneIO(in_shape=shape, out_shape=shape, cond=cond, num_classes=classes)
    return io, f"{source}, drifting generator interface"


def component_rows(net: nn.Module) -> list[tuple[str, int]]:
    """(name, parameter count) of each direct child module and direct parameter of ``net``."""
    rows = [(name, count_parameters(child)) for name, child in net.named_children()]
    rows += [(name, p.numel()) for name, p in net.named_parameters(recurse=False)]
    return [(n, c) for n, c in rows if c]


def resolve(overrides: list[str]) -> tuple[dict, BackboneIO, str]:
    """Compose and validate ``overrides``: the model config, the interface to build it for, its source."""
    plain = plain_config(compose_config(overrides))
    b_cls = _build("model", backbone_class, plain["model"]["name"])
    typed("model", b_cls.Config, plain["model"])
    io, source = backbone_io(plain, overrides)
    return plain["model"], io, source


def build(overrides: list[str], device: str | torch.device = "meta") -> tuple[nn.Module, BackboneIO, str]:
    """The backbone of ``overrides`` on ``device`` (meta: shapes only, no memory), its interface and source."""
    model, io, source = resolve(overrides)
    with torch.device(device):
        net = _build("model", build_backbone, model, io)
    return net, io, source


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        net, io, source = build(args)
    except ConfigError as e:
        print(f"bench.params: error: {e}", file=sys.stderr)
        return 2
    total = count_parameters(net)
    shape = "x".join(str(s) for s in io.out_shape)
    print(f"{_named(args, 'recipe') or _named(args, 'model') or 'model'}: {type(net).__name__} for {shape}, "
          f"{io.num_classes} classes, conditioning {', '.join(io.cond) or 'none'} ({source})")
    rows = component_rows(net)
    width = max([len(n) for n, _ in rows] + [9])
    print(f"{'component':<{width}}  {'params':>13}  {'share':>6}")
    for name, n in rows:
        print(f"{name:<{width}}  {n:>13,}  {100 * n / max(total, 1):>5.1f}%")
    print(f"{'total':<{width}}  {total:>13,}  {100.0:>5.1f}%")
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
