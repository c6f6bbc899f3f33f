"""What the time-conditioned baselines (diffusion, flow matching, MeanFlow) share: a backbone that maps a
data-shaped input to a data-shaped output, conditioned on time scalars and, for class-conditional runs,
on the label y (class ``num_classes`` is the null label of classifier-free guidance)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import BackboneIO, DataSpec
from methods.cfg import sample_labels


class TimeConditioned:
    """Mixin: ``SCALARS`` names the time conditions (``("t",)``; MeanFlow ``("t", "r")``). The methods keep
    no state outside the network, so their checkpointed state is empty."""

    SCALARS: tuple[str, ...] = ("t",)
    exact_accumulation = True   # each loss is a mean of per-sample terms: micro-batches sum to the whole
    name: str
    conditional: bool

    def backbone_io(self, spec: DataSpec) -> BackboneIO:
        if self.conditional and spec.num_classes < 1:
            raise ValueError(f"method.conditional=true needs labelled data; data '{spec.name}' has no classes")
        self.shape, self.null_label = spec.shape, spec.num_classes
        return BackboneIO(in_shape=spec.shape, out_shape=spec.shape,
                          cond=self.SCALARS + (("y",) if self.conditional else ()),
                          num_classes=spec.num_classes if self.conditional else 0, null_class=self.conditional)

    def start_sampling(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
                       guidance: float) -> tuple[torch.device, Tensor | None]:
        """Checks shared by every sampler: the NFE is one the method can do and ``build()`` has run.
        Returns the network's device and the labels to sample with (``cfg.sample_labels``)."""
        self.check_nfe(nfe, guidance)
        if self.shape is None:
            raise RuntimeError(f"{self.name}: build() must run before sample()")
        device = next(net.parameters()).device
        return device, sample_labels(self.conditional, y, len(noise_seeds), self.null_label, device)

    def build(self, backbone: nn.Module, spec: DataSpec) -> nn.Module:
        self.backbone_io(spec)
        return backbone

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
