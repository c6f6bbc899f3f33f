"""Training-time CFG of drifting: alpha laws and unconditional weights (PAPER.md section 3)."""
from __future__ import annotations

import pytest
import torch

from methods.drifting.guidance import (alpha_cdf, effective_alpha, sample_alpha, unconditional_weight)


@pytest.mark.parametrize("k", [1.0, 3.0, 5.0])
def test_alpha_follows_the_power_law(k):
    g = torch.Generator().manual_seed(0)
    a = sample_alpha(20000, 1.0, 4.0, k, generator=g).double()
    assert float(a.min()) >= 1.0 and float(a.max()) <= 4.0
    grid = torch.linspace(1.01, 3.99, 50, dtype=torch.float64)
    emp = (a[None] <= grid[:, None]).double().mean(1)
    assert float((emp - alpha_cdf(grid, 1.0, 4.0, k)).abs().max()) < 0.015     # KS distance
    # the density ~ a^-k: heavier exponent, more mass near 1
    assert float((a < 1.5).double().mean()) > (0.4 if k == 5 else 0.25 if k == 3 else 0.25)


def test_no_cfg_fraction_and_paper_example():
    g = torch.Generator().manual_seed(1)
    a = sample_alpha(20000, 1.0, 4.0, 3.0, no_cfg_frac=0.5, generator=g)
    assert abs(float((a == 1.0).double().mean()) - 0.5) < 0.015
    w = unconditional_weight(torch.tensor([4.0, 1.0]), n_neg=64, n_unc=16)
    assert torch.allclose(w, torch.tensor([189 / 16, 0.0]))      # PAPER.md: alpha 4, 64, 16 -> w ~ 11.8
    assert torch.allclose(effective_alpha(w, 64, 16), torch.tensor([4.0, 1.0]))


def test_bad_laws_fail_clearly():
    with pytest.raises(ValueError, match="alpha_min"):
        sample_alpha(3, 0.5, 4.0)
    with pytest.raises(ValueError, match="no_cfg_frac"):
        sample_alpha(3, no_cfg_frac=1.5)
    with pytest.raises(ValueError, match="at least 2"):
        unconditional_weight(torch.ones(1), 1, 4)
