"""The training fast path: which switches a run uses on its device, and what they do to the modules.

Every switch is a ``train.*`` key; ``null`` means "by device": on for CUDA, off on the CPU, where the
kernels they select do not exist or do not pay (``torch.compile`` on CPUs compiles C++ for tens of seconds
per graph). The resolved values are written into the run record (``train.fast_path``).

- ``precision``: bf16 autocast (the drift loss keeps its distances and softmaxes in fp32 inside
  ``methods.drifting.loss``, where bf16 would underflow at temperature 0.02) or fp32;
- ``tf32``: TF32 matmuls and convolutions for the fp32 work left outside autocast (CUDA only);
- ``compile``: ``torch.compile`` of the trained network (after DDP wrapping) and, in place, of the
  method's frozen feature networks (drifting's MAE encoder); a method that cannot be traced (MeanFlow's
  forward-mode JVP) says so with ``compilable = False``;
- ``fused_adamw``: the single-kernel AdamW;
- ``channels_last``: NHWC memory format for the frozen convolutional feature encoder;
- ``accum_steps``: micro-batches per step (``micro_batches``), equal to the whole batch for methods whose
  loss is a mean of per-sample terms (``exact_accumulation = True``) and refused for the others.
Activation checkpointing is the model's own switch (``model.remat`` of the DiT), recorded beside these.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from methods.base import Batch


@dataclass(frozen=True)
class FastPath:
    precision: str              # bf16 | fp32
    tf32: bool
    compile: bool
    fused_adamw: bool
    channels_last: bool
    accum_steps: int
    remat: bool

    def as_record(self) -> dict:
        return dict(vars(self))


def resolve(device: torch.device, precision: str, tf32: bool, compile: bool | None, fused_adamw: bool | None,
            channels_last: bool | None, accum_steps: int, method, net: nn.Module) -> FastPath:
    """The switches a run uses on ``device`` (``None``: on for CUDA, off elsewhere)."""
    cuda = device.type == "cuda"
    compilable = getattr(method, "compilable", True)
    check_switches(method, compile, accum_steps)
    return FastPath(
        precision="bf16" if precision == "bf16" or (precision == "auto" and cuda) else "fp32",
        tf32=bool(tf32 and cuda),
        compile=bool(compilable and (cuda if compile is None else compile)),
        fused_adamw=bool(cuda if fused_adamw is None else fused_adamw),
        channels_last=bool(cuda if channels_last is None else channels_last),
        accum_steps=accum_steps,
        remat=bool(getattr(getattr(net, "cfg", None), "remat", False)))


def check_switches(method, compile: bool | None, accum_steps: int) -> None:
    """Refuse what ``method`` cannot do: ``train.compile=true`` when it cannot be traced, and
    ``train.accum_steps > 1`` when its loss is not a mean of per-sample terms."""
    name = getattr(method, "name", type(method).__name__)
    if compile and not getattr(method, "compilable", True):
        raise ValueError(f"method {name} cannot run under torch.compile (its loss uses forward-mode AD, "
                         f"which dynamo does not trace): set train.compile=false or leave it null")
    if accum_steps > 1 and not getattr(method, "exact_accumulation", False):
        why = getattr(method, "accumulation_refused", "its loss is not a mean of per-sample terms")
        raise ValueError(f"method {name}: train.accum_steps={accum_steps} is refused: {why}")


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions (process-wide, as PyTorch's flags are)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def prepare_feature_modules(method, fast: FastPath, device: torch.device) -> None:
    """Channels-last and in-place ``compile`` for the method's frozen feature networks (``feature_modules``)."""
    for module in getattr(method, "feature_modules", lambda: [])():
        module.to(device)
        if fast.channels_last:
            module.to(memory_format=torch.channels_last)
        if fast.compile:
            module.compile()


def micro_batches(batch: Batch, parts: int) -> list[Batch]:
    """``batch`` cut into ``parts`` equal consecutive micro-batches whose random draws are the same rows of
    the same keyed streams (``StepRandom.part``): together they see exactly the numbers of the whole."""
    n = batch.x.shape[0]
    if parts == 1:
        return [batch]
    if n % parts:
        raise ValueError(f"train.accum_steps={parts} must divide the per-process batch {n}")
    size = n // parts

    def cut(v, a, b):
        return v[a:b] if torch.is_tensor(v) and v.dim() and v.shape[0] == n else v
    return [replace(batch, x=batch.x[a:a + size], y=cut(batch.y, a, a + size), random=batch.random.part(a, a + size),
                    extra={k: cut(v, a, a + size) for k, v in batch.extra.items()})
            for a in range(0, n, size)]
