"""The wiring of class-conditional drifting (methods/drifting/conditional.py; PAPER.md 1.5, 2.7, 3).

The loss, the feature loss and the generator are tested against the release elsewhere; these tests guard
what connects them, through public behaviour only (``Drifting.loss`` with tiny networks on data whose
classes are separable by construction), so that they hold for any faithful implementation:

- class alignment: the generated samples, positives and unconditional negatives of each group are those of
  the group's class (recorded where they reach ``feature_drift_loss``), and the gradient pulls each class's
  generator output towards its own class;
- alpha alignment: the unconditional weight of each group is (alpha - 1)(N_neg - 1)/N_unc for the alpha that
  group's samples were generated with (A.7);
- gradient flow: the generator's gradient through the encoder's features is non-zero and equals the chain
  rule with the features' Jacobian estimated by finite differences on a tiny encoder.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import pytest
import torch
from torch import nn

from bench.data.tensor_source import TensorSource
from methods.base import DataSpec
from methods.drifting import features as feat
from methods.drifting.encoder import ResNetConfig
from methods.drifting.mae import MAEResNet, save_encoder
from methods.drifting.method import Drifting

K = 4                          # classes
HALF = 8                       # generated images [1, 4, 4]: 8 pixels say the class, 8 the alpha
CLASS_VALUE = torch.tensor([-3.0, -1.0, 1.0, 3.0])
REAL_MARK = -7.0               # the alpha half of real images: tells real rows from generated ones


def separable_data(n_per_class: int = 24) -> TensorSource:
    """Class c: first half of every image = CLASS_VALUE[c] (+- 0.01), second half = REAL_MARK."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(K).repeat_interleave(n_per_class)
    x = torch.cat([CLASS_VALUE[y, None].expand(-1, HALF), torch.full((len(y), HALF), REAL_MARK)], 1)
    x = (x + 0.01 * torch.randn(x.shape, generator=g)).view(-1, 1, 4, 4)
    spec = DataSpec("separable", (1, 4, 4), num_classes=K, kind="images", value_range=None)
    return TensorSource(spec, (x, y), lambda n: (x[:n], y[:n]))


class LabelledGenerator(nn.Module):
    """Writes its conditioning into its output: a learnable value per class (``start``) in the first
    half, the alpha it was given in the second."""

    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(start.clone())

    def forward(self, noise, cond):
        y = cond["y"]
        alpha = cond.get("alpha", torch.ones(len(y)))
        first = self.table[y, None] + 0.05 * noise[:, :HALF]
        return torch.cat([first, alpha[:, None].to(first).expand(-1, HALF)], 1).view(-1, 1, 4, 4)


def drifting(**over) -> Drifting:
    cfg = dict(conditional=True, loss="production", noise_dim=HALF, classes_per_step=K, gen_per_class=6,
               pos_per_class=5, unc_per_class=3, class_queue=16, global_queue=64, encoder_path=None,
               affinity_clamp=0.0)
    cfg.update(over)
    return Drifting(Drifting.Config(**cfg))


def built(method: Drifting, data: TensorSource, net: nn.Module) -> nn.Module:
    method.check_data(data.spec)
    return method.build(net, data.spec)


@pytest.fixture
def recorded(monkeypatch):
    """Every call of ``feature_drift_loss``, as its bound arguments, wherever drifting imported it from."""
    import methods.drifting
    for info in pkgutil.iter_modules(methods.drifting.__path__, "methods.drifting."):
        importlib.import_module(info.name)      # so that no module imports the wrapper and keeps it
    calls = []
    original = feat.feature_drift_loss
    sig = inspect.signature(original)

    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        return original(*args, **kwargs)

    for name, mod in list(sys.modules.items()):
        if name.startswith("methods.drifting") and getattr(mod, "feature_drift_loss", None) is original:
            monkeypatch.setattr(mod, "feature_drift_loss", wrapper)
    return calls


def one_step(method: Drifting, data: TensorSource, net: nn.Module, step: int = 0, batch: int = 16):
    torch.manual_seed(step)
    return method.loss(net, data.batch(step, 0, 0, 1, batch, "cpu"))


def _class_of(rows: torch.Tensor) -> torch.Tensor:
    """Nearest class of each row's first half."""
    return (rows[:, :HALF].mean(1, keepdim=True) - CLASS_VALUE[None]).abs().argmin(1)


def test_each_group_pairs_its_class_and_alpha(recorded):
    data = separable_data()
    method = drifting()
    net = built(method, data, LabelledGenerator(CLASS_VALUE))    # outputs tell their class
    ng, npos, nu = 6, 5, 3
    for step in range(3):
        one_step(method, data, net, step)
    assert len(recorded) == 3
    for call in recorded:
        nc = call["classes"]
        gen, pos, unc = call["gen"]["global"], call["pos"]["global"], call["unc"]["global"]
        assert gen.shape[:2] == (nc * ng, 1) and pos.shape[:2] == (nc * npos, 1) and unc.shape[:2] == (nc * nu, 1)
        gen, pos, unc = gen[:, 0].detach(), pos[:, 0], unc[:, 0]
        alphas = []
        for g in range(nc):
            gen_g, pos_g = gen[g * ng:(g + 1) * ng], pos[g * npos:(g + 1) * npos]
            cls = _class_of(gen_g)
            assert (cls == cls[0]).all(), f"group {g} mixes the generated samples of classes {cls.tolist()}"
            assert (_class_of(pos_g) == cls[0]).all(), (
                f"group {g}: generated class {int(cls[0])}, positives of classes {_class_of(pos_g).tolist()}")
            assert torch.allclose(pos_g[:, HALF:], torch.full_like(pos_g[:, HALF:], REAL_MARK), atol=0.1)
            alpha = gen_g[:, HALF:]
            assert torch.allclose(alpha, alpha[0, 0].expand_as(alpha)), f"group {g} mixes alphas"
            alphas.append(float(alpha[0, 0]))
        assert torch.allclose(unc[:, HALF:], torch.full_like(unc[:, HALF:], REAL_MARK), atol=0.1), \
            "unconditional negatives must be real samples"
        assert len(set(alphas)) == nc and max(alphas) > 1.05          # the draws can tell groups apart
        expected = torch.tensor([(a - 1) * (ng - 1) / nu for a in alphas])
        w = call["w_unc"].detach().double().flatten()
        assert w.shape == (nc,) and torch.allclose(w, expected.double(), rtol=1e-5, atol=1e-6), (
            f"unconditional weights {w.tolist()} != (alpha - 1)(N_neg - 1)/N_unc = {expected.tolist()}")


def test_gradient_pulls_each_class_towards_its_own_data():
    """Without CFG: -dL/d(table[c]) points from the generator's value for c to the data of class c."""
    data = separable_data()
    method = drifting(cfg=False, unc_per_class=0)
    net = built(method, data, LabelledGenerator(torch.zeros(K)))
    seen = set()
    for step in range(3):
        net.zero_grad()
        loss, _ = one_step(method, data, net, step)
        loss.backward()
        pull = -net.table.grad
        for c in torch.nonzero(pull.abs() > 0).flatten().tolist():
            seen.add(c)
            toward = CLASS_VALUE - net.table.detach()[c]           # from the current value to every class
            assert torch.sign(pull[c]) == torch.sign(toward[c]), f"class {c} is pulled away from its data"
    assert len(seen) >= 3


# -- gradient flow through a tiny encoder (float64) -------------------------------------------------------

class SmoothGenerator(nn.Module):
    """A tiny conditional generator of 8x8 images; remembers its last inputs."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(HALF, 64)
        self.emb = nn.Embedding(K, 64)
        self.last = None

    def forward(self, noise, cond):
        self.last = (noise, dict(cond))
        h = self.lin(noise.to(self.lin.weight.dtype)) + self.emb(cond["y"])   # keyed noise is float32
        if "alpha" in cond:
            h = h * cond["alpha"][:, None].to(h)
        return torch.tanh(h).view(-1, 1, 8, 8)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_generator_gradient_through_encoder_matches_finite_differences(tmp_path, float64, recorded):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    y = torch.arange(K).repeat_interleave(16)
    x = (torch.randn(len(y), 1, 8, 8, generator=g) * 0.3 + (y.double()[:, None, None, None] - 1.5) * 0.4).tanh()
    spec = DataSpec("digits8", (1, 8, 8), num_classes=K, kind="images", value_range=(-1.0, 1.0))
    data = TensorSource(spec, (x, y), lambda n: (x[:n], y[:n]))
    path = tmp_path / "enc.pt"
    # gn_min_channels=4: with one channel per GroupNorm group (the release's rule at width 4) the per-channel
    # mean and std keys are constants, and their finite differences are rounding noise
    save_encoder(path, MAEResNet(1, K, ResNetConfig(width=4, layers=[1, 1, 1, 1], gn_min_channels=4)), spec, {})
    method = drifting(encoder_path=str(path), raw_loss=False, gen_per_class=5, pos_per_class=4, unc_per_class=2,
                      queue_dtype="float64")
    net = built(method, data, SmoothGenerator())

    loss, _ = one_step(method, data, net)
    net.zero_grad()
    loss.backward()
    params = list(net.parameters())
    grad_dot = lambda v: sum(float((p.grad * d).sum()) for p, d in zip(params, v))  # noqa: E731
    assert sum(float(p.grad.norm()) for p in params) > 0, "no gradient reaches the generator"

    # dL/d(features) as the loss sees them, then the features' Jacobian by central differences along a few
    # random unit directions of the generator's parameters.
    (call,) = recorded
    leaves = {k: v.detach().clone().requires_grad_() for k, v in call["gen"].items()}
    again, _ = feat.feature_drift_loss(**{**call, "gen": leaves})
    assert torch.allclose(again, loss.detach(), rtol=1e-12)
    d_feat = dict(zip(leaves, torch.autograd.grad(again, list(leaves.values()))))
    encoder = next(m for m in _modules(method) if hasattr(m, "forward_patched"))
    noise, cond = net.last
    eps = 1e-4        # the std and RMS statistics are float32 (as in the release): smaller steps get noisy

    def features_at(v: list[torch.Tensor], step: float) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(step * d)
            out = feat.feature_vectors(encoder, net(noise, cond), tuple(method.cfg.patch_sizes), raw=False)
            for p, d in zip(params, v):
                p.sub_(step * d)
        return out

    tr = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = [torch.randn(p.shape, generator=tr) for p in params]
        norm = sum(float(d.pow(2).sum()) for d in v) ** 0.5
        v = [d / norm for d in v]
        plus, minus = features_at(v, eps), features_at(v, -eps)
        assert set(plus) == set(d_feat), "the loss received other features than the encoder's"
        chain = {k: float((d_feat[k] * (plus[k] - minus[k]) / (2 * eps)).sum()) for k in d_feat}
        size = sum(abs(c) for c in chain.values())
        encoder_share = sum(abs(c) for k, c in chain.items() if k != "norm_x")
        assert encoder_share > 0.5 * size, "the encoder's maps carry too little of the gradient to test"
        # Measured error of the estimate: ~1e-3 of ``size``; dropping the std statistics alone moves the
        # sum by ~0.3 of it.
        assert abs(grad_dot(v) - sum(chain.values())) <= 1e-2 * size, (
            f"generator gradient . v = {grad_dot(v):.6g}, chain rule with finite differences = "
            f"{sum(chain.values()):.6g}: " + ", ".join(f"{k} {c:.3g}" for k, c in chain.items()))


def _modules(method: Drifting) -> list[nn.Module]:
    """Modules the method holds (the frozen encoder among them), found without naming its attributes."""
    found, todo, visited = [], [method], set()
    while todo:
        obj = todo.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        for val in vars(obj).values():
            if isinstance(val, nn.Module):
                found.append(val)
            elif hasattr(val, "__dict__") and type(val).__module__.startswith("methods."):
                todo.append(val)
    return found
