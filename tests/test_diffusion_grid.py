"""Every diffusion sampler integrates the timestep grid it claims, for every N of the NFE grid.

With the exact epsilon oracle of a narrow mode (x ~ N(MU, S^2 I), S = 0.01, ENVIRONMENT.md) the last step
of a correct sampler lands on the posterior mean E[x0 | x_last] at the grid's last noise level sigma_last,
whose spread is S^2 / sqrt(S^2 + sigma_last^2) (smaller than S: the last step cannot resolve a mode
narrower than its noise). diffusers 0.42.1's ``DDIMScheduler.step`` stepped to t - 1000 // N, off the grid
when N does not divide 1000, and left std 0.0125 at N = 64 and 0.0174 at N = 128 (more than S itself).
"""
from __future__ import annotations

import os

import pytest
import torch

from methods.base import DataSpec
from methods.diffusion import Diffusion, ddim_step, grid_pairs, make_scheduler
from tests.test_baselines_math import DiffusionOracle

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MU, S = torch.tensor([1.0, 0.0], dtype=torch.float64), 0.01
SPEC = DataSpec(name="narrow", shape=(2,), num_classes=0, kind="points")
GRID = (16, 32, 64, 128)


def NarrowOracle(prediction: str = "epsilon") -> DiffusionOracle:
    """The exact oracle of the narrow mode, on abar written out from the DDPM paper (not from diffusers)."""
    return DiffusionOracle("linear", prediction, MU, S)


def nfe_of(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler == "heun" else steps


def last_sigma(sampler: str, steps: int, method: Diffusion) -> float:
    sched = make_scheduler(sampler, steps, 1000, "linear", *method.betas, "epsilon")
    if sampler in ("ddim", "ddpm"):
        a = method.alphas_cumprod.double()[int(sched.timesteps[-1])]
        return float(((1 - a) / a).sqrt())
    return float(sched.sigmas[-2])


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp_2m", "euler", "heun"])
def test_narrow_mode_spread_matches_the_grids_last_step(sampler):
    stds = []
    for steps in GRID:
        method = Diffusion(Diffusion.Config(sampler=sampler))
        oracle = method.build(NarrowOracle(), SPEC)
        x = method.sample(oracle, torch.arange(1000), None, nfe_of(sampler, steps), 1.0).double()
        sig = last_sigma(sampler, steps, method)
        expected = S**2 / (S**2 + sig**2) ** 0.5
        std = x.std(0).mean().item()
        stds.append(std)
        assert abs(std - expected) < 0.15 * expected, (steps, std, expected)
        torch.testing.assert_close(x.mean(0), MU, rtol=0, atol=2e-3)
    assert stds == sorted(stds) and stds[-1] < S, stds     # finer grids resolve more, never leftover noise


@pytest.mark.parametrize("steps", GRID)
def test_ddim_network_times_equal_the_grid_and_end_at_the_chain_end(steps):
    method = Diffusion(Diffusion.Config(sampler="ddim"))
    oracle = method.build(NarrowOracle(), SPEC)
    method.sample(oracle, torch.arange(8), None, steps, 1.0)
    grid = make_scheduler("ddim", steps, 1000, "linear", *method.betas, "epsilon").timesteps.tolist()
    assert [round(t) for t in oracle.seen] == grid and len(grid) == steps and grid[0] == 999
    pairs = grid_pairs(torch.tensor(grid))
    assert [p for p, _ in pairs] == grid and [q for _, q in pairs] == grid[1:] + [-1]


@pytest.mark.parametrize("steps", [10, 64])
def test_ddpm_step_equals_diffusers_ddpm_scheduler_on_any_grid(steps):
    """Our ancestral step (DDIM, eta = 1) equals diffusers' DDPMScheduler step, which does find the next grid
    entry (``previous_timestep``), on a grid that divides 1000 and on one that does not."""
    from diffusers import DDPMScheduler

    method = Diffusion(Diffusion.Config(sampler="ddpm"))
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing="trailing",
                         clip_sample=False)
    ddpm.set_timesteps(steps)
    g = torch.Generator().manual_seed(3)
    x, out = torch.randn(1, 2, generator=g), torch.randn(1, 2, generator=g)
    for t, t_prev in grid_pairs(ddpm.timesteps)[:-1]:
        z = torch.randn(1, 2, generator=torch.Generator().manual_seed(t))
        ours = ddim_step(method.alphas_cumprod, t, t_prev, x, out, "epsilon", 1.0, z)
        theirs = ddpm.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_v_prediction_step_equals_epsilon_step():
    """The same oracle in both parameterisations takes the same DDIM step."""
    method = Diffusion(Diffusion.Config())
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    eps_o, v_o = NarrowOracle(), NarrowOracle("v_prediction")
    t = torch.full((5,), 0.5)
    a = ddim_step(method.alphas_cumprod, 500, 437, x, eps_o(x, {"t": t}), "epsilon")
    b = ddim_step(method.alphas_cumprod, 500, 437, x, v_o(x, {"t": t}), "v_prediction")
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
