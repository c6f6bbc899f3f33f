"""EDM (methods/edm.py) against Karras et al. 2022 in closed form.

- The preconditioning coefficients of Table 1 (and diffusers' ``EDMEulerScheduler``, which uses the same
  ones), the loss weight lambda = 1 / c_out^2, the Karras grid of Eq. 5.
- With the exact denoiser of a narrow mode x ~ N(MU, S^2 I) (S = 0.01), D(x; sigma) = MU + S^2 / (S^2 +
  sigma^2) (x - MU), Heun and Euler land on the posterior mean at the grid's last sigma (sigma_min), whose
  spread is S^2 / sqrt(S^2 + sigma_min^2), at N = 16, 32, 64 and 128; Heun evaluates the network 2N - 1 times.
- The training loss at the exact denoiser is the closed-form irreducible error E[lambda(sigma) Var(x | x_sigma)].
"""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from methods.base import DataSpec, StepRandom, Batch
from methods.edm import EDM, karras_sigmas, loss_weight, preconditioning

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MU, S = torch.tensor([1.0, 0.0], dtype=torch.float64), 0.01
SPEC = DataSpec(name="narrow", shape=(2,), num_classes=0, kind="points")


class ExactF(nn.Module):
    """The raw network F whose preconditioned denoiser is the exact one for N(MU, S^2 I) (inverting Eq. 7)."""

    def __init__(self, sigma_data: float, shift: float = 0.0):
        super().__init__()
        self.sigma_data, self.shift, self.calls = sigma_data, shift, 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x_in, cond):
        self.calls += 1
        sigma = (4 * cond["t"].double()).exp().view(-1, 1)          # c_noise = ln(sigma) / 4
        c_skip, c_out, c_in, _ = preconditioning(sigma, self.sigma_data)
        x = x_in.double() / c_in
        d = MU + S**2 / (S**2 + sigma**2) * (x - MU) + self.shift
        return ((d - c_skip * x) / c_out).float()


def test_preconditioning_is_table_1_and_diffusers_agrees():
    from diffusers import EDMEulerScheduler

    sigma = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, 0.5)
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    at = preconditioning(torch.tensor(0.5), 0.5)                   # sigma = sigma_data: c_skip = 1/2
    assert math.isclose(at[0].item(), 0.5) and math.isclose(at[1].item(), 0.5 / math.sqrt(2), rel_tol=1e-6)
    torch.testing.assert_close(loss_weight(sigma, 0.5) * c_out**2, torch.ones_like(sigma))
    sched = EDMEulerScheduler(sigma_data=0.5, prediction_type="epsilon")
    x, f = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    for s in sigma.tolist():
        cs, co, ci, cn = preconditioning(torch.tensor(s, dtype=torch.float64), 0.5)
        torch.testing.assert_close(sched.precondition_outputs(x, f, s), cs * x + co * f)
        torch.testing.assert_close(sched.precondition_inputs(x, s), ci * x)
        torch.testing.assert_close(sched.precondition_noise(torch.tensor(s)).double(), cn, rtol=1e-6, atol=1e-7)


def test_karras_grid_is_eq_5():
    s = karras_sigmas(8, 0.002, 80.0, 7.0)
    i = torch.arange(8, dtype=torch.float64)
    expected = (80 ** (1 / 7) + i / 7 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(s[:-1], expected, rtol=1e-6, atol=0)
    assert s[-1] == 0 and len(s) == 9


@pytest.mark.parametrize("sampler,final_tol", [("heun", 0.03), ("euler", 0.06)])
def test_exact_denoiser_on_a_narrow_mode_lands_on_the_last_posterior_mean(sampler, final_tol):
    """Measured spread / expected: Heun 1.24, 1.045, 1.006, 0.997 at N = 16, 32, 64, 128 (second order);
    Euler 0.73, 0.85, 0.92, 0.96 (first order)."""
    expected = S**2 / math.sqrt(S**2 + 0.002**2)
    errors = []
    for steps in (16, 32, 64, 128):
        method = EDM(EDM.Config(sampler=sampler))
        net = method.build(ExactF(0.5), SPEC)
        nfe = 2 * steps - 1 if sampler == "heun" else steps
        x = method.sample(net, torch.arange(1000), None, nfe, 1.0).double()
        assert net.calls == nfe
        errors.append(abs(x.std(0).mean().item() - expected) / expected)
        torch.testing.assert_close(x.mean(0), MU, rtol=0, atol=2e-3)
    assert max(errors) < 0.3 and errors[0] > errors[1] > errors[2] and errors[3] < final_tol, errors


def test_loss_at_the_exact_denoiser_is_the_irreducible_error():
    """E[lambda(sigma) ||D - x||^2] / dims at the exact D is E_sigma[lambda(sigma) S^2 sigma^2 / (S^2 + sigma^2)];
    a denoiser shifted by 0.05 pays lambda(sigma) 0.05^2 more."""
    method = EDM(EDM.Config())
    method.build(nn.Identity(), SPEC)
    n = 200_000
    rnd = StepRandom(0, 0, 0, 1, n, "cpu")
    x = (MU + S * torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).float()
    loss, _ = method.loss(ExactF(0.5), Batch(x=x, y=torch.zeros(n, dtype=torch.long), step=0, random=rnd))
    sigma = (-1.2 + 1.2 * StepRandom(0, 0, 0, 1, n, "cpu").randn()).exp().double()
    expected = (loss_weight(sigma, 0.5) * S**2 * sigma**2 / (S**2 + sigma**2)).mean().item()
    assert abs(loss.item() - expected) < 0.02 * expected, (loss.item(), expected)
    shifted, _ = method.loss(ExactF(0.5, shift=0.05), Batch(x=x, y=torch.zeros(n, dtype=torch.long), step=0,
                                                           random=StepRandom(0, 0, 0, 1, n, "cpu")))
    extra = (loss_weight(sigma, 0.5) * 0.05**2).mean().item()
    assert abs(shifted.item() - loss.item() - extra) < 0.02 * extra


def test_bad_options_fail_in_one_line():
    with pytest.raises(ValueError, match="method.sampler must be one of"):
        EDM(EDM.Config(sampler="ddim"))
    with pytest.raises(ValueError, match="sigma_max must exceed"):
        EDM(EDM.Config(sigma_max=0.001))
