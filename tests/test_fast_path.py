"""The training fast path: accumulation equals the whole batch, the deferred non-finite guard names the
first bad step, compiled and eager steps agree, remat and fused AdamW change nothing but rounding, and
bf16 autocast leaves the drift loss in fp32 and q, k, v in bf16."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.data import build_data
from methods.backbones import build_backbone
from methods.backbones.dit_layers import rope_tables
from methods.base import BackboneIO, Batch, StepRandom
from methods.drifting.method import Drifting
from methods.harness.dist import DistEnv
from methods.harness.fast_path import check_switches, micro_batches
from methods.harness.optim import build_optimizer
from methods.harness.trainer import TrainConfig, Trainer, TrainingDiverged
from methods.registry import method_class


def _trainer(run_dir, method_name="flow", **train):
    torch.manual_seed(0)
    data = build_data({"name": "ring8"})
    cls = method_class(method_name)
    method = cls(cls.Config())
    net = method.build(build_backbone({"name": "mlp", "hidden": 32, "depth": 2}, method.backbone_io(data.spec)),
                       data.spec)
    cfg = TrainConfig(**{"steps": 4, "batch_size": 64, "lr": 1e-2, "progress": False, "ckpt_every_steps": 100,
                         "log_every": 1, "ema": [0.9], **train})
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(method, net, data, cfg, run_dir, 0, DistEnv(), log=lambda s: None)


def _log(trainer):
    import json
    return [json.loads(r) for r in trainer.log_path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["flow", "diffusion", "meanflow"])
def test_accumulated_micro_batches_equal_the_whole_batch(tmp_path, method):
    whole, parts = _trainer(tmp_path / "a", method), _trainer(tmp_path / "b", method, accum_steps=4)
    whole.fit(), parts.fit()
    for name, p in whole.net.state_dict().items():
        torch.testing.assert_close(parts.net.state_dict()[name], p, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(_log(whole), _log(parts)):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_micro_batches_draw_the_rows_of_the_whole_batch():
    r = StepRandom(3, 5, 1, 2, 40, "cpu")
    batch = Batch(torch.arange(40.0)[:, None], torch.arange(40), 5, r)
    full = [StepRandom(3, 5, 1, 2, 40, "cpu").randn(2), StepRandom(3, 5, 1, 2, 40, "cpu").rand(3)]
    pieces = micro_batches(batch, 4)
    assert [int(p.x[0]) for p in pieces] == [0, 10, 20, 30]
    got = [(p.random.randn(2), p.random.rand(3)) for p in pieces]
    assert torch.equal(torch.cat([g[0] for g in got]), full[0])
    assert not torch.equal(torch.cat([g[1] for g in got]), full[1])      # second call: another stream
    with pytest.raises(ValueError, match="must divide the per-process batch 40"):
        micro_batches(batch, 3)


def test_accumulation_is_refused_for_drifting_and_compile_for_meanflow():
    with pytest.raises(ValueError, match=r"method drifting: train.accum_steps=2 is refused: the drift loss's scale S"):
        check_switches(Drifting(Drifting.Config()), None, 2)
    meanflow = method_class("meanflow")
    with pytest.raises(ValueError, match="method meanflow cannot run under torch.compile"):
        check_switches(meanflow(meanflow.Config()), True, 1)
    check_switches(meanflow(meanflow.Config()), None, 2)
    with pytest.raises(ValueError, match="train.accum_steps=3 must be >= 1 and divide the per-process batch 32"):
        TrainConfig(batch_size=64, accum_steps=3).validate(world=2)


def test_the_deferred_guard_names_the_first_bad_step_and_saves_nothing_after_it(tmp_path):
    """Read every step or only every 4 steps: the same first non-finite step; no checkpoint past it."""
    def diverge(name, **kw):
        t = _trainer(tmp_path / name, steps=12, lr=1e30, **kw)
        with pytest.raises(TrainingDiverged) as e:
            t.fit()
        return t, e.value

    eager, e1 = diverge("every", log_every=1)
    late, e4 = diverge("late", log_every=4)
    _, es = diverge("saves", log_every=100, ckpt_every_steps=1)     # the checkpoint is the first read
    assert e1.step == e4.step == es.step and e1.what == e4.what and eager.step == e1.step + 1
    assert late.step == 4 > e4.step + 1                       # it ran on to the next read, which named it
    assert e4.checkpoint_step is None and not e4.checkpoint_path.exists()
    assert es.checkpoint_step == es.step                      # the state before the bad step, and finite
    state = torch.load(es.checkpoint_path, weights_only=False)
    assert state["step"] == es.step and all(torch.isfinite(v).all() for v in state["net"].values())
    assert f"non-finite {e1.what} at step {e1.step}" in str(e4)


def test_log_rows_hold_window_means(tmp_path):
    every, grouped = _trainer(tmp_path / "a", steps=8), _trainer(tmp_path / "b", steps=8, log_every=4)
    every.fit(), grouped.fit()
    rows1, rows4 = _log(every), _log(grouped)
    assert [r["step"] for r in rows4] == [4, 8]
    for i, row in enumerate(rows4):
        mean = sum(r["loss"] for r in rows1[4 * i:4 * i + 4]) / 4
        assert row["loss"] == pytest.approx(mean, rel=1e-6)
    assert every.summary(None).fast_path["accum_steps"] == 1


def test_fused_adamw_matches_the_foreach_kernels():
    torch.manual_seed(0)
    nets = [torch.nn.Linear(8, 8) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [build_optimizer(n, 1e-2, 0.01, (0.9, 0.95), fused) for n, fused in zip(nets, (False, True))]
    x = torch.randn(16, 8)
    for _ in range(3):
        for n, o in zip(nets, opts):
            o.zero_grad()
            n(x).square().mean().backward()
            o.step()
    assert opts[1].param_groups[0]["fused"] and not opts[0].param_groups[0]["fused"]
    torch.testing.assert_close(nets[0].weight, nets[1].weight, rtol=1e-6, atol=1e-7)


def _tiny_dit(remat: bool):
    cfg = {"name": "dit", "patch_size": 2, "hidden": 32, "depth": 2, "heads": 2, "n_context_tokens": 2,
           "n_style_tokens": 0, "remat": remat}
    torch.manual_seed(0)
    net = build_backbone(cfg, BackboneIO((1, 8, 8), (1, 8, 8), ("t",)))
    with torch.no_grad():                   # the zero-initialised output layers would give no gradients
        for p in net.parameters():
            if not p.any():
                p.normal_(std=0.05)
    return net


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    grads = []
    for remat in (False, True):
        net = _tiny_dit(remat).train()
        loss = net(x, {"t": t}).square().mean()
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    for name, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][name], g, rtol=1e-6, atol=1e-8, msg=name)


class _Float32Outputs(TorchDispatchMode):
    """Records the shapes of the float32 tensors each op produces."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if torch.is_tensor(o) and o.dtype == torch.float32:
                self.shapes.append(tuple(o.shape))
        return out


def test_bf16_attention_keeps_q_k_v_in_bf16_and_close_to_fp32():
    """RoPE and SDPA make no fp32 copy of q, k or v under bf16 autocast (the QK-norm is checked on its own:
    on CPUs ``F.rms_norm`` decomposes into fp32 ops, on CUDA it is one fused kernel)."""
    net = _tiny_dit(False).eval()
    block = net.blocks[0].attn
    x, rope = torch.randn(3, 18, 32), rope_tables(18, 16, "cpu")
    ref = block(x, rope).detach()
    block.q_norm = block.k_norm = torch.nn.Identity()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with _Float32Outputs() as seen:
            block(x, rope)
    assert (3, 2, 18, 16) not in seen.shapes, "an fp32 copy of q, k or v on the bf16 path"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = _tiny_dit(False).eval().blocks[0].attn(x, rope)
    torch.testing.assert_close(fast.float(), ref, rtol=0.05, atol=0.02)


def test_bf16_rms_norm_has_fp32_statistics():
    from methods.backbones.dit_layers import RMSNorm
    norm = RMSNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(8, 300, 64) * 5).bfloat16()
    exact = torch.nn.functional.rms_norm(x.double(), (64,), norm.weight.bfloat16().double(), 1e-6)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    ulp = exact.abs().clamp_min(1e-3) * 2.0 ** -7
    assert bool(((out.double() - exact).abs() <= 2 * ulp).all())


def test_drift_loss_stays_fp32_under_bf16_autocast():
    from methods.drifting.loss import drift_loss
    g = torch.Generator().manual_seed(0)
    gen = torch.randn(3, 16, 24, generator=g, requires_grad=True)
    pos, neg = torch.randn(3, 16, 24, generator=g), torch.randn(3, 8, 24, generator=g)
    plain, _ = drift_loss(gen, pos, neg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast, info = drift_loss(gen, pos, neg)
    assert cast.dtype == torch.float32 and info["scale"].dtype == torch.float32
    torch.testing.assert_close(cast, plain, rtol=1e-6, atol=0)


@pytest.mark.slow
def test_compiled_and_eager_steps_give_the_same_loss(tmp_path):
    eager, compiled = _trainer(tmp_path / "a", steps=3), _trainer(tmp_path / "b", steps=3, compile=True)
    assert compiled.fast.compile and not eager.fast.compile
    eager.fit(), compiled.fit()
    for a, b in zip(_log(eager), _log(compiled)):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for name, p in eager.net.state_dict().items():   # inductor's sin/cos of the time features (arguments up to
        # ~1e3) differ from eager's by ~1e-4, which Adam passes on to the first time-embedding layer
        torch.testing.assert_close(compiled.net.state_dict()[name], p, rtol=1e-3, atol=1e-3, msg=name)
