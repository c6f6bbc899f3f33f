"""The DiT generator (PAPER.md section 4): shapes, adaLN-zero init, paper parameter counts, RoPE,
conditioning paths, config errors, and a few real optimisation steps on digits."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from bench import params
from bench.config import ConfigError, compose_config
from bench.tasks import prepare
from bench.data.digits import digits_arrays
from methods.backbones import build_backbone
from methods.backbones.dit import DiT
from methods.backbones.dit_layers import apply_rope, rope_tables, sincos_2d, swiglu_hidden
from methods.base import BackboneIO, count_parameters

DRIFT_COND = ("y", "alpha", "style")
TINY = DiT.Config(patch_size=2, hidden=32, depth=2, heads=2, n_context_tokens=2, n_style_tokens=4,
                  style_codebook=8)


def make(cfg=TINY, in_shape=(1, 8, 8), out_shape=None, cond=DRIFT_COND, classes=10, seed=0) -> DiT:
    torch.manual_seed(seed)
    return DiT(BackboneIO(in_shape, out_shape or in_shape, cond, classes), cfg)


def conditions(net: DiT, b: int, seed: int = 1, **fixed) -> dict:
    g = torch.Generator().manual_seed(seed)
    cond = {"y": torch.randint(10, (b,), generator=g), "alpha": 1 + 3 * torch.rand(b, generator=g),
            "t": torch.rand(b, generator=g), "r": torch.rand(b, generator=g)}
    if net.style_shape:
        n, k = net.style_shape
        cond["style"] = torch.randint(k, (b, n), generator=g)
    cond.update(fixed)
    return {k: v for k, v in cond.items() if k in net.cond.cond}


def perturb_zero_init(net: DiT, seed: int = 0) -> None:
    """Give the zero-initialised adaLN and output layers random weights, so every path reaches the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".ada." in name or name.startswith("final."):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("cfg,in_shape,out_shape,cond", [
    (TINY, (1, 8, 8), (1, 8, 8), DRIFT_COND),
    (replace(TINY, patch_size=1), (3, 4, 6), (3, 4, 6), ("y", "t")),             # rectangular, patch 1
    (replace(TINY, patch_size=4, n_context_tokens=0, n_style_tokens=0), (3, 8, 16), (2, 8, 16), ("t", "r")),
    (replace(TINY, swiglu=False, rmsnorm=False, qk_norm=False, use_rope=False, learn_pos_embed=False),
     (4, 8, 8), (4, 8, 8), ()),                                                 # plain DiT, unconditional
])
def test_output_shape_and_zero_init(cfg, in_shape, out_shape, cond):
    net = make(cfg, in_shape, out_shape, cond)
    x = torch.randn(3, *in_shape)
    out = net(x, conditions(net, 3))
    assert out.shape == (3, *out_shape)
    assert torch.count_nonzero(out) == 0          # adaLN-zero + zero output layer: exactly 0 at init
    perturb_zero_init(net)
    out = net(x, conditions(net, 3))
    assert out.shape == (3, *out_shape) and torch.isfinite(out).all() and out.abs().min() > 0


def test_patchify_layout_and_round_trip():
    net = make(replace(TINY, patch_size=2), (3, 4, 6), (3, 4, 6))
    x = torch.randn(2, 3, 4, 6)
    tokens = net.patchify(x)
    assert tokens.shape == (2, 6, 12)
    # token (row 1, col 2) holds pixels [2:4, 4:6] flattened as (row, col, channel), the release's layout
    assert torch.equal(tokens[:, 1 * 3 + 2], x[:, :, 2:4, 4:6].permute(0, 2, 3, 1).reshape(2, 12))
    assert torch.equal(net.unpatchify(tokens), x)


def test_sincos_2d_layout():
    emb = sincos_2d(8, 2, 3)                  # first half encodes the column, second half the row
    r, c = 1, 2
    row = emb[r * 3 + c]
    assert torch.allclose(row[:4], torch.tensor([math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)]))
    assert torch.allclose(row[4:], torch.tensor([math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100)]))


def test_swiglu_width_matches_release():
    assert swiglu_hidden(768, 4.0) == 2048 and swiglu_hidden(1024, 4.0) == 2752


@pytest.mark.parametrize("model,paper", [("drift_b2", 133e6), ("drift_l2", 463e6), ("drift_b16", 134e6),
                                         ("drift_l16", 464e6)])
def test_paper_parameter_counts(model, paper, capsys):
    assert params.main([f"model={model}"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert abs(int(last) - paper) / paper < 0.01, (model, last)
    net, io, _ = params.build([f"model={model}"])
    assert next(net.parameters()).device.type == "meta" and io.num_classes == 1000
    assert count_parameters(net) == int(last)


def test_params_errors(capsys):
    assert params.main(["model=nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert params.main(["model=dit_digits", "model.patch_size=3", "data=digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.patch_size=3 must divide" in err


def test_patch_size_error():
    with pytest.raises(ValueError, match=r"model.patch_size=3 must divide the data's height and width; got 8x8"):
        make(replace(TINY, patch_size=3))
    with pytest.raises(ConfigError, match=r"model dit needs image data \[C, H, W\]"):   # bench.run: config time
        prepare(compose_config(["model=dit_digits", "data=ring8"]))
    with pytest.raises(ValueError, match=r"heads=3 must divide model.hidden=32"):
        make(replace(TINY, heads=3))
    with pytest.raises(ValueError, match=r"needs image data"):
        make(in_shape=(32,), out_shape=(1, 8, 8))


def test_bad_inputs_are_one_line_errors():
    net = make()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(KeyError, match="missing \\['style'\\]"):
        net(x, {"y": torch.zeros(2, dtype=torch.long), "alpha": torch.ones(2)})
    with pytest.raises(ValueError, match="outside \\[0, 8\\)"):
        net(x, conditions(net, 2, style=torch.full((2, 4), 8)))
    with pytest.raises(ValueError, match="outside \\[0, 10\\)"):
        net(x, conditions(net, 2, y=torch.full((2,), 10)))
    with pytest.raises(ValueError, match="built for \\(1, 8, 8\\)"):
        net(torch.randn(2, 1, 4, 4), conditions(net, 2))


def test_rope_scores_depend_only_on_position_difference():
    n, dim = 12, 16
    cos, sin = rope_tables(n, dim, "cpu")
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    rq = apply_rope(q.expand(1, 1, n, dim), cos, sin)[0, 0]
    rk = apply_rope(k.expand(1, 1, n, dim), cos, sin)[0, 0]
    scores = rq @ rk.T                                           # scores[i, j] = <R_i q, R_j k>
    for offset in range(-n + 1, n):
        diag = torch.diagonal(scores, offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-5)
    assert not torch.allclose(scores[0, 0], scores[0, 5])        # ... and they do depend on it
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(n))   # a rotation


def test_style_tokens_change_output_and_use_own_tables():
    net = make()
    x = torch.randn(2, 1, 8, 8)
    cond = conditions(net, 2)
    assert torch.equal(net(x, cond), net(x, {**cond, "style": (cond["style"] + 1) % 8}))   # zero at init
    perturb_zero_init(net)
    base = net(x, cond)
    changed = cond["style"].clone()
    changed[:, 0] = (changed[:, 0] + 1) % 8
    assert not torch.allclose(base, net(x, {**cond, "style": changed}))
    swapped = cond["style"].clone()
    swapped[:, [0, 1]] = torch.tensor([[0, 1]] * 2)
    other = swapped.clone()
    other[:, [0, 1]] = torch.tensor([[1, 0]] * 2)
    assert not torch.allclose(net(x, {**cond, "style": swapped}), net(x, {**cond, "style": other}))
    assert net.style_shape == (4, 8)
    assert make(cond=("y", "alpha")).style_shape is None                       # method did not ask
    assert make(replace(TINY, n_style_tokens=0)).style_shape is None           # model config disables


def test_class_table_has_a_null_row_only_for_label_dropout():
    """The release's table has one row per class (drifting drops no labels); the baselines add the null class."""
    assert make().cond.classes.num_embeddings == 10
    net = DiT(BackboneIO((1, 8, 8), (1, 8, 8), ("t", "y"), 10, null_class=True), TINY)
    assert net.cond.classes.num_embeddings == 11
    perturb_zero_init(net)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.3])
    assert not torch.allclose(net(x, {"t": t, "y": torch.tensor([10, 10])}), net(x, {"t": t, "y": torch.tensor([9, 9])}))


@pytest.mark.parametrize("key,value", [("y", torch.tensor([3, 9])), ("alpha", torch.tensor([2.5, 1.0])),
                                       ("t", torch.tensor([0.9, 0.1])), ("r", torch.tensor([0.0, 0.5]))])
def test_each_condition_changes_output(key, value):
    net = make(cond=("y", "alpha", "t", "r", "style"))
    perturb_zero_init(net)
    x = torch.randn(2, 1, 8, 8)
    cond = conditions(net, 2, y=torch.tensor([1, 2]), alpha=torch.tensor([1.0, 3.0]), t=torch.tensor([0.2, 0.4]),
                      r=torch.tensor([0.1, 0.2]))
    assert not torch.allclose(net(x, cond), net(x, {**cond, key: value}))


def test_mlp_ignores_style():
    io = BackboneIO((32,), (2,), ("alpha",))
    with_style = build_backbone({"name": "mlp"}, replace(io, cond=("alpha", "style")))
    assert count_parameters(with_style) == count_parameters(build_backbone({"name": "mlp"}, io))
    assert with_style(torch.randn(3, 32), {"alpha": torch.ones(3)}).shape == (3, 2)


def test_remat_and_bf16_autocast():
    net = make(replace(TINY, remat=True, attn_fp32=True))
    perturb_zero_init(net)
    x = torch.randn(4, 1, 8, 8)
    cond = conditions(net, 4)
    net(x, cond).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.cfg = replace(net.cfg, remat=False)
    net(x, cond).square().sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(grads, net.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, cond)
    assert torch.isfinite(out).all() and torch.allclose(out.float(), net(x, cond), atol=0.1)


def test_tiny_dit_overfits_a_digits_batch():
    """Real optimisation: fixed noise + (class, alpha, style) -> 64 real digits; Adam drives the MSE down."""
    x_train, y_train, _, _ = digits_arrays()
    target, labels = x_train[:64], y_train[:64]
    net = make(replace(TINY, hidden=64, heads=4))
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 1, 8, 8, generator=g)
    cond = conditions(net, 64, y=labels)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (net(noise, cond) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_perf_script_runs(capsys):
    from bench.perf import backbone_step
    assert backbone_step.main(["model=dit_tiny", "--batch", "4", "--repeats", "1", "--warmup", "0"]) == 0
    assert "forward+backward: median" in capsys.readouterr().out


def test_runs_in_the_parameters_dtype():
    net = make().double()
    perturb_zero_init(net)
    out = net(torch.randn(2, 1, 8, 8, dtype=torch.float64), conditions(net, 2))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_same_function_as_the_official_release():
    """Same weights and inputs as the release's JAX DitGen (tests/dit_reference.py) -> same output."""
    import json

    from tests.dit_reference import JSON, reference_model
    net, x, cond = reference_model()
    ref = torch.tensor(json.loads(JSON.read_text())["output_bchw"], dtype=torch.float64)
    out = net(x, cond).detach()
    assert out.shape == ref.shape and ref.abs().max() > 0.5
    assert (out - ref).abs().max() < 1e-5 * ref.abs().max(), (out - ref).abs().max()
