"""The maths of the baselines against closed forms.

- ODE solvers: Euler is exact on a straight (linear-path) velocity field; midpoint and Heun are exact on a
  velocity linear in time; every solver converges at its order on the Gaussian flow-matching field.
- Diffusion: every diffusers sampler, driven by an exact epsilon (or v) oracle for a Gaussian target,
  recovers that Gaussian (the grid itself: tests/test_diffusion_grid.py).
- MeanFlow: the JVP target equals a central finite difference, and with the exact average velocity of a
  Gaussian flow the target reproduces u (the MeanFlow identity) and 1- and 2-step sampling are exact.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from methods.base import DataSpec
from methods.diffusion import Diffusion
from methods.flow import FlowMatching
from methods.meanflow import MeanFlow, meanflow_target
from methods.ode import integrate_dopri5, integrate_fixed

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MU, S = torch.tensor([1.5, -0.5], dtype=torch.float64), 0.5
SPEC = DataSpec(name="gauss", shape=(2,), num_classes=0, kind="points")


def gaussian_velocity(z, t):
    """Exact flow-matching velocity E[eps - x | z_t] for x ~ N(MU, S^2 I), z_t = (1 - t) x + t eps."""
    t = t.view(-1, 1).to(z.dtype)
    var = (1 - t) ** 2 * S**2 + t**2
    return -MU + (t - (1 - t) * S**2) / var * (z - (1 - t) * MU)


def sigma(t):
    return torch.sqrt((1 - t) ** 2 * S**2 + t**2)


def gaussian_map(eps, r):
    """Exact flow from t = 1 (z = eps) to time r: z_r = (1 - r) MU + sigma_r eps."""
    return (1 - r) * MU + sigma(torch.as_tensor(r, dtype=eps.dtype)) * eps


# ---------------------------------------------------------------- ODE solvers
@pytest.mark.parametrize("solver", ["euler", "midpoint"])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_solvers_exact_on_straight_field(solver, steps):
    """A point mass x* gives v(z, t) = (z - x*) / t: straight paths at constant speed, so Euler (and the
    midpoint rule) land on x* exactly with any step count (Heun would evaluate v at t = 0, undefined)."""
    target = torch.tensor([[0.3, -2.0]], dtype=torch.float64)
    eps = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = integrate_fixed(lambda z, t: (z - target) / t.view(-1, 1), eps, torch.linspace(1, 0, steps + 1,
                          dtype=torch.float64), solver)
    torch.testing.assert_close(out, target.expand(5, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver,exact", [("euler", False), ("midpoint", True), ("heun", True)])
def test_second_order_solvers_exact_on_time_linear_field(solver, exact):
    """v = a + b t integrates to a (t1 - t0) + b (t1^2 - t0^2) / 2: second-order rules are exact, Euler is not."""
    a, b = torch.tensor([[1.0, -2.0]], dtype=torch.float64), torch.tensor([[3.0, 0.5]], dtype=torch.float64)
    x0 = torch.zeros(1, 2, dtype=torch.float64)
    out = integrate_fixed(lambda z, t: a + b * t.view(-1, 1), x0, torch.linspace(1, 0, 4, dtype=torch.float64), solver)
    expected = -a - b / 2
    assert torch.allclose(out, expected, atol=1e-12) == exact


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_solvers_converge_at_their_order_on_gaussian_flow(solver, order):
    """Halving the step divides the error by at least 2^order (the midpoint rule does better here: 2^3)."""
    eps = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = gaussian_map(eps, 0.0)
    errs = [(integrate_fixed(gaussian_velocity, eps, torch.linspace(1, 0, n + 1, dtype=torch.float64), solver)
             - exact).abs().max().item() for n in (16, 32, 64)]
    rates = [np.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(r > order - 0.25 for r in rates) and errs[-1] > 0, (errs, rates)


def test_dopri5_meets_its_tolerance_and_counts_evaluations():
    eps = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    calls = []

    def f(z, t, rows):
        calls.append(z.shape[0])
        return gaussian_velocity(z, t)

    out, evals = integrate_dopri5(f, eps, 1.0, 0.0, rtol=1e-8, atol=1e-8, max_evals=10_000)
    torch.testing.assert_close(out, gaussian_map(eps, 0.0), rtol=0, atol=1e-6)
    assert sum(evals) == sum(calls) and all(e >= 8 for e in evals) and calls[0] == 3


def _stiffening(z, t, rows):
    """A nonlinear field whose stiffness differs per row, so every image needs its own step sizes."""
    rate = (1.0 + 4.0 * rows.to(z.dtype)).view(-1, 1)
    return rate * z + torch.sin(3 * t.view(-1, 1) + z)          # decays from t = 1 back to t = 0


def test_batched_dopri5_solves_each_image_as_it_would_alone_and_as_torchdiffeq_does():
    from torchdiffeq import odeint
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out, evals = integrate_dopri5(_stiffening, x, 1.0, 0.0, rtol=1e-7, atol=1e-7, max_evals=10_000)
    assert len(set(evals)) > 1                                   # the rows took different steps
    for i in range(5):
        alone, n = integrate_dopri5(lambda z, t, rows: _stiffening(z, t, rows + i), x[i:i + 1], 1.0, 0.0,
                                    rtol=1e-7, atol=1e-7, max_evals=10_000)
        torch.testing.assert_close(alone[0], out[i], rtol=0, atol=1e-12)
        assert n == [evals[i]]
        ref = odeint(lambda t, z: _stiffening(z, t.expand(1), torch.tensor([i])), x[i:i + 1],
                     torch.tensor([1.0, 0.0], dtype=torch.float64), method="dopri5", rtol=1e-7, atol=1e-7)[-1]
        torch.testing.assert_close(out[i], ref[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- diffusion with an exact oracle
def alphas_cumprod(schedule: str) -> torch.Tensor:
    """abar_k written out from the papers, independently of diffusers."""
    k = torch.arange(1001, dtype=torch.float64)
    if schedule == "linear":                                  # DDPM: betas linear in [1e-4, 0.02]
        return torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    f = torch.cos((k / 1000 + 0.008) / 1.008 * torch.pi / 2) ** 2   # Nichol and Dhariwal 2021, beta <= 0.999
    return torch.cumprod(1 - (1 - f[1:] / f[:-1]).clamp(max=0.999), 0)


class DiffusionOracle(nn.Module):
    """The exact epsilon (or v) prediction for x ~ N(mu, s^2 I) at time t = k / 1000 (k may be fractional);
    ``seen`` records the timesteps k it was asked about."""

    def __init__(self, schedule: str, prediction: str, mu: torch.Tensor = MU, s: float = S):
        super().__init__()
        self.abar = alphas_cumprod(schedule)
        self.prediction, self.mu, self.s, self.seen = prediction, mu, s, []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, cond):
        k = cond["t"].double() * 1000
        self.seen.append(float(k[0]))
        lo = k.floor().long().clamp(0, 999)
        w = (k - lo).view(-1, 1)
        abar = ((1 - w) * self.abar[lo].view(-1, 1) + w * self.abar[(lo + 1).clamp(max=999)].view(-1, 1))
        x = x.double()
        eps = (1 - abar).sqrt() / (abar * self.s**2 + 1 - abar) * (x - abar.sqrt() * self.mu)
        if self.prediction == "epsilon":
            return eps.float()
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        return (abar.sqrt() * eps - (1 - abar).sqrt() * x0).float()


@pytest.mark.parametrize("sampler,nfe,schedule,prediction", [
    ("ddim", 500, "linear", "epsilon"), ("ddim", 500, "cosine", "v_prediction"), ("ddpm", 500, "linear", "epsilon"),
    ("dpmpp_2m", 50, "linear", "epsilon"), ("euler", 500, "linear", "epsilon"), ("heun", 101, "linear", "v_prediction"),
])
def test_sampler_with_exact_oracle_recovers_gaussian(sampler, nfe, schedule, prediction):
    """First-order samplers need a few hundred steps to bring this Gaussian's std within 0.03 (at 50 DDIM
    steps it is 0.47 instead of 0.5: discretisation error, shrinking with N)."""
    method = Diffusion(Diffusion.Config(sampler=sampler, schedule=schedule, prediction=prediction))
    oracle = method.build(DiffusionOracle(schedule, prediction), SPEC)
    x = method.sample(oracle, torch.arange(4000), None, nfe, 1.0).double()
    torch.testing.assert_close(x.mean(0), MU, rtol=0, atol=0.03)
    torch.testing.assert_close(x.std(0), torch.full((2,), S, dtype=torch.float64), rtol=0, atol=0.03)


def test_wrong_schedule_oracle_is_detected():
    """The recovery test can fail: an oracle for the cosine schedule driven by the linear one is off."""
    method = Diffusion(Diffusion.Config(sampler="ddim", schedule="linear"))
    oracle = method.build(DiffusionOracle("cosine", "epsilon"), SPEC)
    x = method.sample(oracle, torch.arange(2000), None, 50, 1.0).double()
    assert (x.std(0) - S).abs().max() > 0.05 or (x.mean(0) - MU).abs().max() > 0.05


# ---------------------------------------------------------------- MeanFlow
def exact_average_velocity(z, r, t):
    """u(z_t, r, t) = (z_t - z_r) / (t - r) for the Gaussian flow (the limit v(z_t, t) at r = t)."""
    tt, rr = t.view(-1, 1).double(), r.view(-1, 1).double()
    eps = (z - (1 - tt) * MU) / sigma(tt)
    h = tt - rr
    safe = torch.where(h > 0, h, torch.ones_like(h))
    avg = (z - ((1 - rr) * MU + sigma(rr) * eps)) / safe
    return torch.where(h > 0, avg, gaussian_velocity(z, t))


def test_meanflow_target_matches_finite_difference_jvp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 2)).double()
    u_fn = lambda z, r, t: net(torch.cat([z, r[:, None], t[:, None]], 1))  # noqa: E731
    g = torch.Generator().manual_seed(4)
    z, v = torch.randn(16, 2, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)
    t = torch.rand(16, generator=g, dtype=torch.float64) * 0.8 + 0.2
    r = t * torch.rand(16, generator=g, dtype=torch.float64)
    u, target = meanflow_target(u_fn, z, r, t, v)
    h = 1e-5
    dudt = (u_fn(z + h * v, r, t + h) - u_fn(z - h * v, r, t - h)) / (2 * h)
    torch.testing.assert_close(u, u_fn(z, r, t))
    torch.testing.assert_close(target, v - (t - r)[:, None] * dudt, rtol=1e-6, atol=1e-8)
    _, jvp = torch.func.jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    torch.testing.assert_close(target, v - (t - r)[:, None] * jvp, rtol=1e-12, atol=1e-12)
    assert not target.requires_grad and u.requires_grad


def test_meanflow_identity_holds_for_exact_gaussian_average_velocity():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(32, 2, generator=g, dtype=torch.float64)
    t = torch.rand(32, generator=g, dtype=torch.float64) * 0.9 + 0.1
    r = torch.where(torch.arange(32) % 4 == 0, t, t * torch.rand(32, generator=g, dtype=torch.float64))
    u, target = meanflow_target(exact_average_velocity, z, r, t, gaussian_velocity(z, t))
    torch.testing.assert_close(target, u, rtol=1e-9, atol=1e-9)


class MeanFlowOracle(nn.Module):
    """The exact u, read through MeanFlow's backbone conditioning: t, and the interval h = t - r as "r"."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z, cond):
        t = cond["t"].double()
        return exact_average_velocity(z.double(), t - cond["r"].double(), t).float()


@pytest.mark.parametrize("nfe", [1, 2, 5])
def test_meanflow_sampling_with_exact_u_is_exact(nfe):
    method = MeanFlow(MeanFlow.Config())
    net = method.build(MeanFlowOracle(), SPEC)
    seeds = torch.arange(7)
    from methods.base import per_image_noise
    eps = per_image_noise(seeds, (2,), "cpu").double()
    torch.testing.assert_close(method.sample(net, seeds, None, nfe, 1.0).double(), gaussian_map(eps, 0.0),
                               rtol=0, atol=1e-5)


def test_flow_sampling_with_exact_velocity_converges():
    """The flow method's Euler sampler on the exact Gaussian velocity approaches the exact map."""

    class Oracle(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, z, cond):
            return gaussian_velocity(z.double(), cond["t"].double()).float()

    method = FlowMatching(FlowMatching.Config(sampler="heun"))
    net = method.build(Oracle(), SPEC)
    from methods.base import per_image_noise
    eps = per_image_noise(torch.arange(7), (2,), "cpu").double()
    out = method.sample(net, torch.arange(7), None, 64, 1.0).double()
    torch.testing.assert_close(out, gaussian_map(eps, 0.0), rtol=0, atol=1e-3)   # 32 Heun steps, float32


def test_meanflow_target_through_dit_attention_matches_finite_difference():
    """The JVP runs through the DiT's attention (math backend inside the JVP) and agrees with a central
    finite difference in float64."""
    from methods.backbones import build_backbone

    spec = DataSpec(name="digits", shape=(1, 8, 8), num_classes=10, kind="images", value_range=(-1.0, 1.0))
    method = MeanFlow(MeanFlow.Config(conditional=True))
    cfg = dict(name="dit", patch_size=2, hidden=32, depth=2, heads=2, n_context_tokens=2, n_style_tokens=0)
    torch.manual_seed(0)
    net = method.build(build_backbone(cfg, method.backbone_io(spec)), spec).double()
    for p in net.parameters():              # adaLN-zero starts at an exactly-zero output: perturb it
        p.data.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(6)
    z, v = (torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64)
    r = torch.tensor([0.2, 0.5, 0.0], dtype=torch.float64)
    y = torch.tensor([1, 10, 4])
    # The DiT's time embedding computes its sinusoid (of 1000 t) in float32, too coarse for a finite
    # difference in t; the network gets fixed times and u gains an analytic dependence on (r, t) instead,
    # so the JVP through attention (in z) and the time tangent are both checked in float64.
    t0, h0 = torch.full((3,), 0.7, dtype=torch.float64), torch.full((3,), 0.4, dtype=torch.float64)
    u_fn = lambda zz, rr, tt: net(zz, {"t": t0, "r": h0, "y": y}) * (1 + (tt * tt - rr).view(-1, 1, 1, 1))  # noqa: E731
    _, target = meanflow_target(u_fn, z, r, t, v)
    h = 1e-6
    dudt = (u_fn(z + h * v, r, t + h) - u_fn(z - h * v, r, t - h)) / (2 * h)
    expected = v - (t - r).view(-1, 1, 1, 1) * dudt
    assert dudt.abs().max() > 1e-2
    torch.testing.assert_close(target, expected, rtol=1e-6, atol=1e-7)


def test_meanflow_jvp_runs_in_fp32_under_bf16_autocast():
    """The JVP target under bf16 autocast equals the fp32 one (autocast is switched off inside it); with
    autocast left on, the same network's target differs at the 1e-3 level."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.SiLU(), nn.Linear(64, 2))
    u_fn = lambda z, r, t: net(torch.cat([z, r[:, None], t[:, None]], 1))     # noqa: E731
    g = torch.Generator().manual_seed(2)
    z, v = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    t = torch.rand(64, generator=g) * 0.9 + 0.1
    r = t * torch.rand(64, generator=g)
    u32, tgt32 = meanflow_target(u_fn, z, r, t, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u16, tgt16 = meanflow_target(u_fn, z, r, t, v)
        naive = u_fn(z, r, t)
    assert u16.dtype == torch.float32 and tgt16.dtype == torch.float32
    torch.testing.assert_close(tgt16, tgt32, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(u16, u32, rtol=1e-6, atol=1e-6)
    assert naive.dtype == torch.bfloat16 and (naive.float() - u32).abs().max() > 1e-3
