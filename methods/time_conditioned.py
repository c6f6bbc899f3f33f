"""What the time-conditioned baselines (diffusion, flow matching, MeanFlow) share: a backbone that maps a
data-shaped input to a data-shaped output, conditioned on time scalars and, for class-conditional runs,
on the label y (class ``num_classes`` is the null label of classifier-free guidance)."""
from __future__ import annotations

from torch import nn

from methods.base import BackboneIO, DataSpec


class TimeConditioned:
    """Mixin: ``SCALARS`` names the time conditions (``("t",)``; MeanFlow ``("t", "r")``). The methods keep
    no state outside the network, so their checkpointed state is empty."""

    SCALARS: tuple[str, ...] = ("t",)
    name: str
    conditional: bool

    def backbone_io(self, spec: DataSpec) -> BackboneIO:
        if self.conditional and spec.num_classes < 1:
            raise ValueError(f"method.conditional=true needs labelled data; data '{spec.name}' has no classes")
        self.shape, self.null_label = spec.shape, spec.num_classes
        return BackboneIO(in_shape=spec.shape, out_shape=spec.shape,
                          cond=self.SCALARS + (("y",) if self.conditional else ()),
                          num_classes=spec.num_classes if self.conditional else 0)

    def build(self, backbone: nn.Module, spec: DataSpec) -> nn.Module:
        self.backbone_io(spec)
        return backbone

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
