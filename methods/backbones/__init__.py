"""Backbones: pure ``nn.Module``s mapping ``(x, cond) -> tensor``, with no noise logic.

``build_backbone(cfg_dict, io)`` builds the registered backbone named by ``cfg_dict['name']``.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from methods.backbones import dit, mlp  # noqa: F401  (registers)
from methods.base import BackboneIO
from methods.registry import backbone_class, make_config


def build_backbone(cfg: dict[str, Any], io: BackboneIO) -> nn.Module:
    cls = backbone_class(cfg["name"])
    return cls(io, make_config(cls, cfg))
