"""Normalisations that only act at the edges of their range (PAPER.md 2.2, 2.4; the release's code).

- The distance-scale clamps of the production loss (``methods/drifting/loss.py``): coordinates are divided
  by max(S / sqrt(D), 1e-3) and distances by max(S, 1e-3). Inputs of unit scale never reach either floor,
  so the parity tests of ``test_drift_loss.py`` cannot see them; here S is made small on purpose.
- The MAE reconstruction loss (``methods/drifting/mae.py``; the release's ``MAEResNetJAX.__call__``): the
  squared error is summed over channels and averaged over the masked positions, which only a
  multi-channel input can tell from a mean over channels.
"""
from __future__ import annotations

import math

import pytest
import torch

from methods.drifting.encoder import ResNetConfig, patchify
from methods.drifting.loss import drift_loss
from methods.drifting.mae import MAEResNet, mae_losses, patch_mask
from tests.test_drift_loss import _loss_and_grad, _rel, official_drift_loss


def _small(d: int, spread: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64) * spread  # noqa: E731
    x = (r(2, 8, d) + 0.3 * spread).requires_grad_()
    return x, r(2, 6, d) + 0.5 * spread, r(2, 3, d)


@pytest.mark.parametrize("d,spread,clamped", [
    (4096, 3e-4, "coordinates"),   # S ~ 0.03: above 1e-3, but S / sqrt(D) ~ 5e-4 is below it
    (4, 2.5e-4, "both"),           # S ~ 7e-4: distances and coordinates at their floors
])
def test_scale_clamps_match_the_release(d, spread, clamped):
    x, pos, neg = _small(d, spread)
    w = {"w_neg": torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4}
    l_ref, g_ref, info_ref = _loss_and_grad(official_drift_loss, x, pos, neg, **w)
    l, g, info = _loss_and_grad(drift_loss, x, pos, neg, **w)
    s = float(info["scale"])
    assert s / math.sqrt(d) < 1e-3 and (s < 1e-3) == (clamped == "both")       # the regime we meant
    assert abs(s / float(info_ref["scale"]) - 1) < 1e-10
    assert _rel(l, l_ref) < 1e-9 and _rel(g, g_ref) < 1e-9


def _grad(x, pos, neg):
    x = x.detach().clone().requires_grad_()
    loss, info = drift_loss(x, pos, neg, temperatures=(0.05,))
    loss.sum().backward()
    return x.grad, float(info["scale"])


def test_coordinate_clamp_sets_the_gradient_scale():
    """Below the floor, coordinates are divided by 1e-3 whatever S is: the normalised drift (unit RMS per
    temperature) does not change when the inputs shrink further, so neither does dL/dx = -2 V / (1e-3 N D)
    (without the clamp it would double, as coordinates would be divided by S / sqrt(D))."""
    x, pos, neg = _small(4096, 3e-4)
    g1, s1 = _grad(x, pos, neg)
    g2, s2 = _grad(0.5 * x, 0.5 * pos, 0.5 * neg)
    assert s2 == pytest.approx(0.5 * s1, rel=1e-3)          # (up to the 1e-4 floor of the self distances)
    assert _rel(g2, g1) < 1e-3
    n, dim = x.shape[1], x.shape[2]
    assert float(g1.pow(2).mean().sqrt()) * 1e-3 * n * dim / 2 == pytest.approx(1.0, rel=1e-9)


def test_mae_loss_sums_channels_and_averages_masked_positions():
    torch.manual_seed(0)
    model = MAEResNet(3, 10, ResNetConfig(width=8, layers=[1, 1, 1, 1], input_patch=2))
    x, y = torch.randn(4, 3, 8, 8), torch.randint(10, (4,))
    mask = patch_mask(torch.rand(4, 2, 2), (4, 4), 2, 0.5)            # on the 4x4 grid of 2x2 patches
    mask[:, :, :2, :2] = 1.0                                            # at least one masked patch each
    rec, _, _ = mae_losses(model, x, y, mask)
    xp = patchify(x, 2)                                                 # [4, 12, 4, 4]: 12 channels
    recon, _ = model(xp * (1 - mask))
    assert torch.equal(recon, model((xp + 5.0 * mask) * (1 - mask))[0])   # every channel is masked
    per_position = (recon - xp).pow(2).sum(dim=1)                       # summed over the 12 channels
    m = mask[:, 0]
    expected = (per_position * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2))
    assert torch.allclose(rec, expected, rtol=1e-5)
    per_element = ((recon - xp).pow(2) * m[:, None]).sum(dim=(1, 2, 3)) / (m.sum(dim=(1, 2)) * xp.shape[1])
    assert torch.allclose(rec, 12 * per_element, rtol=1e-5)            # not the mean over channels
