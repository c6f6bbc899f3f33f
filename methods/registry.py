"""Name -> class registries for methods and backbones.

Each registered class carries a ``Config`` dataclass; ``config_schema`` gives it to the config layer,
which type-checks user overrides against it before anything runs.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable

METHODS: dict[str, type] = {}
BACKBONES: dict[str, type] = {}


def _register(table: dict[str, type], kind: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        name = cls.name
        if name in table:
            raise KeyError(f"{kind} '{name}' is registered twice")
        table[name] = cls
        return cls
    return deco


register_method = _register(METHODS, "method")
register_backbone = _register(BACKBONES, "backbone")


def _lookup(table: dict[str, type], kind: str, name: str) -> type:
    _import_builtins()
    if name not in table:
        raise KeyError(f"unknown {kind} '{name}'; choose one of: {', '.join(sorted(table))}")
    return table[name]


def method_class(name: str) -> type:
    return _lookup(METHODS, "method", name)


def backbone_class(name: str) -> type:
    return _lookup(BACKBONES, "backbone", name)


def make_config(cls: type, values: dict[str, Any]):
    """Build ``cls.Config`` from a plain dict (keys beyond the dataclass's fields are an error)."""
    known = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise KeyError(f"{cls.name}: unknown option(s) {unknown}; valid: {sorted(known)}")
    return cls.Config(**values)


def _import_builtins() -> None:
    """Import the modules that register the built-in methods and backbones."""
    import methods.backbones  # noqa: F401
    import methods.drifting.method  # noqa: F401
    import methods.diffusion  # noqa: F401
    import methods.edm  # noqa: F401
    import methods.flow  # noqa: F401
    import methods.meanflow  # noqa: F401
