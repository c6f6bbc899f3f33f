"""NFE is measured, not declared: every baseline sampler, through ``bench.sampling.generate`` and its row
counter, evaluates exactly the requested NFE (guided steps counting 2); impossible requests fail in one
line that names the valid NFE; and sample i depends only on its seed, whatever the batch."""
from __future__ import annotations

import os

import pytest
import torch

from bench.config import ConfigError, compose_config
from bench.tasks import prepare
from bench.sampling import generate
from methods.backbones import build_backbone
from methods.base import NFEError
from methods.diffusion import Diffusion
from methods.flow import FlowMatching
from methods.meanflow import MeanFlow

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLERS = [("flow", s) for s in ("euler", "midpoint", "heun")] + \
           [("diffusion", s) for s in ("ddpm", "ddim", "dpmpp_2m", "euler", "heun")] + [("meanflow", None)] + \
           [("edm", s) for s in ("heun", "euler")]


def build(method: str, sampler: str | None, conditional: bool = True, extra: tuple[str, ...] = ()):
    over = [f"method={method}", "data=ring8", "model.hidden=16", "model.depth=1", "data.n_train=64",
            f"method.conditional={str(conditional).lower()}", *extra]
    if sampler:
        over.append(f"method.sampler={sampler}")
    spec = prepare(compose_config(over))
    torch.manual_seed(0)
    net = spec.method.build(build_backbone(spec.model, spec.method.backbone_io(spec.data.spec)), spec.data.spec)
    return spec.method, net


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("method,sampler", SAMPLERS)
@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_measured_nfe_equals_requested(method, sampler, guidance):
    m, net = build(method, sampler)
    grid = m.default_nfe()
    if guidance != 1.0:                       # a guided step evaluates 2 rows: every count doubles
        grid = [2 * n for n in grid]
    labels = torch.arange(6) % 8
    for nfe in grid[:4] + grid[-1:]:
        gen = generate(m, net, 6, 100, nfe, guidance, batch_size=4, labels=labels, latency_repeats=1)
        assert gen.nfe_measured == nfe, (method, sampler, nfe, guidance, gen.nfe_measured)
        assert torch.isfinite(gen.samples).all()


def test_heun_counts_are_documented_and_asserted():
    """Flow Heun corrects every step (2N evaluations); diffusers' Heun skips the last correction (2N - 1)."""
    flow, fnet = build("flow", "heun", conditional=False)
    for steps in (1, 3, 8):
        assert generate(flow, fnet, 3, 0, 2 * steps, 1.0, 3, latency_repeats=0).nfe_measured == 2 * steps
    with pytest.raises(NFEError, match="multiple of 2"):
        flow.check_nfe(3, 1.0)
    diff, dnet = build("diffusion", "heun", conditional=False)
    for steps in (1, 3, 8):
        assert generate(diff, dnet, 3, 0, 2 * steps - 1, 1.0, 3, latency_repeats=0).nfe_measured == 2 * steps - 1
    with pytest.raises(NFEError, match="2N-1"):
        diff.check_nfe(4, 1.0)
    assert diff.default_nfe() == [1, 3, 7, 15, 31, 63, 127]


class CallCounter(torch.nn.Module):
    """Records the rows of every network call (independently of bench.sampling's counter)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, cond):
        self.calls.append(x.shape[0])
        return self.net(x, cond)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_dopri5_nfe_is_measured_and_capped(guidance):
    """dopri5 picks its own steps: eval.nfe is a ceiling; the batch is solved at once (the first call
    evaluates every image, twice when guided) and the measured NFE is the mean number of rows per image."""
    m, net = build("flow", "dopri5", extra=("method.rtol=1e-3", "method.atol=1e-3"))
    labels = torch.arange(4) % 8
    gen = generate(m, net, 4, 7, 400, guidance, batch_size=4, labels=labels, latency_repeats=0)
    spy = CallCounter(net)
    m.sample(spy, torch.arange(7, 11), labels, 400, guidance)
    passes = 1 if guidance == 1.0 else 2
    assert spy.calls[0] == 4 * passes and max(spy.calls) == 4 * passes
    assert gen.nfe_measured == sum(spy.calls) / 4 <= 400
    assert 8 <= len(spy.calls) < sum(spy.calls) / passes
    with pytest.raises(NFEError, match="dopri5 needed more than 9 evaluations"):
        generate(m, net, 1, 7, 9 * passes, guidance, 1, labels=labels[:1], latency_repeats=0)


@pytest.mark.parametrize("method,sampler", SAMPLERS + [("flow", "dopri5")])
def test_sample_depends_only_on_its_seed(method, sampler):
    m, net = build(method, sampler, extra=("method.rtol=1e-3", "method.atol=1e-3") if sampler == "dopri5" else ())
    grid = m.default_nfe()
    nfe = 2 * grid[min(3, len(grid) - 1)]       # guidance 1.5: every count doubles
    labels = torch.arange(6) % 8
    whole = generate(m, net, 6, 40, nfe, 1.5, 6, labels=labels, latency_repeats=0).samples
    split = generate(m, net, 6, 40, nfe, 1.5, 4, labels=labels, latency_repeats=0).samples
    torch.testing.assert_close(whole, split, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(whole[0], whole[1])


@pytest.mark.parametrize("overrides,expect", [
    (["method=flow", "method.sampler=heun", "eval.nfe=[3]"], "multiple of 2"),
    (["method=flow", "method.sampler=midpoint", "eval.nfe=[1,2]"], "multiple of 2"),
    (["method=flow", "method.sampler=rk4"], "method.sampler must be one of"),
    (["method=flow", "eval.guidance=[2.0]"], "needs a class-conditional model"),
    (["method=flow", "method.conditional=true", "eval.guidance=[2.0]", "eval.nfe=[3]"], "multiple of 2"),
    (["method=flow", "method.conditional=true", "method.label_dropout=0", "eval.guidance=[2.0]", "eval.nfe=[2]"],
     "unconditional branch"),
    (["method=flow", "method.time_dist=beta"], "method.time_dist must be one of"),
    (["method=diffusion", "method.sampler=heun", "eval.nfe=[2]"], "2N-1"),
    (["method=diffusion", "eval.nfe=[1001]"], "between 1 and 1000"),
    (["method=diffusion", "method.sampler=plms"], "method.sampler must be one of"),
    (["method=diffusion", "method.prediction=x0"], "method.prediction must be one of"),
    (["method=diffusion", "method.schedule=sigmoid"], "method.schedule must be one of"),
    (["method=meanflow", "eval.nfe=[0]"], "positive multiple of 1"),
    (["method=meanflow", "method.omega=2.0"], "needs method.conditional=true"),
    (["method=meanflow", "method.conditional=true", "method.omega=2.0", "eval.guidance=[2.0]"], "built in"),
    (["method=flow", "method.conditional=true", "data=swissroll", "model.hidden=8"], None),
])
def test_bad_requests_fail_in_one_line(overrides, expect):
    over = ["data=ring8", *overrides]
    if expect is None:                       # swissroll has one class: conditional is allowed and builds
        prepare(compose_config(over))
        return
    try:
        spec = prepare(compose_config(over))
    except ConfigError as e:
        assert expect in one_line(e), str(e)
        return
    pytest.fail(f"no error for {overrides} (built {spec.run_id})")


def test_unlabelled_request_and_direct_sampling_errors():
    with pytest.raises(NFEError) as e:
        FlowMatching(FlowMatching.Config(sampler="midpoint")).check_nfe(5, 1.0)
    assert "e.g. 2, 4, 8" in one_line(e.value)
    with pytest.raises(NFEError) as e:
        Diffusion(Diffusion.Config()).check_nfe(3, 2.0)
    assert "needs a class-conditional model" in one_line(e.value)
    with pytest.raises(NFEError) as e:
        MeanFlow(MeanFlow.Config(conditional=True)).check_nfe(3, 2.0)
    assert "multiple of 2" in one_line(e.value)
