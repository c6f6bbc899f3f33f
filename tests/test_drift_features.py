"""Feature encoder, MAE objective and feature-space loss of drifting (PAPER.md 2.2-2.3)."""
from __future__ import annotations

import argparse

import pytest
import torch

from bench.perf.drift_loss import looped_feature_loss, make_inputs
from methods.drifting.encoder import ResNetConfig, ResNetEncoder, patchify, unpatchify
from methods.drifting.features import feature_drift_loss, feature_vectors, map_vectors
from methods.drifting.mae import MAEPretraining, MAEResNet, mae_losses, patch_mask


def test_encoder_taps_and_shapes():
    enc = ResNetEncoder(4, ResNetConfig(width=8, layers=[3, 4, 6, 3]))
    f = enc(torch.randn(2, 4, 32, 32))
    # [code]: conv1, layer1..4, and blocks 2 (4, 6) of each stage: 12 maps for [3, 4, 6, 3]
    assert list(f) == ["conv1", "layer1_blk2", "layer1", "layer2_blk2", "layer2_blk4", "layer2", "layer3_blk2",
                       "layer3_blk4", "layer3_blk6", "layer3", "layer4_blk2", "layer4"]
    assert f["conv1"].shape == (2, 8, 32, 32) and f["layer2"].shape == (2, 16, 16, 16)
    assert f["layer3"].shape == (2, 32, 8, 8) and f["layer4"].shape == (2, 64, 4, 4)


def test_pixel_patchify_stem():
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(x, 8), 8, 3), x)
    assert patchify(x, 8)[0, :, 1, 2].tolist() == x[0, :, 8:16, 16:24].permute(1, 2, 0).flatten().tolist()
    enc = ResNetEncoder(3, ResNetConfig(width=8, layers=[1, 1, 1, 1], input_patch=8))
    assert enc(x)["conv1"].shape == (2, 8, 4, 4)        # "conv1 stride 8": 32x32x3 -> 4x4x192 -> width 8


def test_map_vectors_match_naive_statistics():
    f = torch.randn(3, 5, 8, 8)
    v = map_vectors("m", f, (2, 4))
    assert set(v) == {"m", "m_mean", "m_std", "m_mean_2", "m_std_2", "m_mean_4", "m_std_4"}
    assert torch.allclose(v["m"][1, 8 * 2 + 3], f[1, :, 2, 3])
    assert torch.allclose(v["m_std"][2, 0], (f[2].var(dim=(1, 2), unbiased=False) + 1e-6).sqrt(), atol=1e-6)
    patch = f[0, :, 4:8, 0:4].reshape(5, -1)                            # 4x4 patch (row 1, col 0)
    assert torch.allclose(v["m_mean_4"][0, 2], patch.mean(1), atol=1e-6)
    assert torch.allclose(v["m_std_4"][0, 2], (patch.var(1, unbiased=False) + 1e-6).sqrt(), atol=1e-5)
    one = map_vectors("z", torch.randn(3, 5, 1, 1))
    assert list(one) == ["z"]                                          # 1x1: no duplicate mean, no constant std


def test_feature_vectors_keys():
    enc = ResNetEncoder(1, ResNetConfig(width=8, layers=[2, 2, 2, 2]))
    x = torch.randn(4, 1, 8, 8)
    v = feature_vectors(enc, x)
    assert v["global"].shape == (4, 1, 64) and v["norm_x"].shape == (4, 1, 1)
    assert torch.allclose(v["norm_x"][:, 0, 0], (x.pow(2).mean(dim=(1, 2, 3)) + 1e-6).sqrt())
    assert v["conv1"].shape == (4, 64, 8) and v["layer2_mean_4"].shape == (4, 1, 16)
    assert "layer4_std" not in v and "layer4" in v
    assert list(feature_vectors(None, x)) == ["global"]


def test_feature_loss_equals_per_class_loop():
    """Batched over classes, locations and equal-width keys = the per-class loop (bench/perf/drift_loss.py)."""
    args = argparse.Namespace(classes=3, gen=6, pos=5, unc=4, image=8, width=8, layers=[2, 2, 2, 2])
    gen, pos, unc, w = make_inputs(args, torch.device("cpu"))
    gen64 = {k: v.detach().double().requires_grad_() for k, v in gen.items()}
    to64 = lambda d: {k: v.double() for k, v in d.items()}  # noqa: E731
    loss, info = feature_drift_loss(gen64, to64(pos), to64(unc), 3, w.double())
    loss.backward()
    grads = {k: v.grad.clone() for k, v in gen64.items()}
    for v in gen64.values():
        v.grad = None
    ref = looped_feature_loss(gen64, to64(pos), to64(unc), 3, w.double())
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-9)
    for k in gen64:
        assert torch.allclose(grads[k], gen64[k].grad, rtol=1e-7, atol=1e-12), k
    assert {"scale", "drift_sq/0.05", "attract_sq/0.2", "repel_sq/0.02", "scale/global"} <= set(info)


def test_feature_loss_is_invariant_to_class_order():
    args = argparse.Namespace(classes=3, gen=4, pos=4, unc=2, image=8, width=8, layers=[1, 1, 1, 1])
    gen, pos, unc, w = make_inputs(args, torch.device("cpu"))
    perm = lambda d, n: {k: v.view(3, n, *v.shape[1:])[[2, 0, 1]].flatten(0, 1) for k, v in d.items()}  # noqa
    a, _ = feature_drift_loss(gen, pos, unc, 3, w)
    b, _ = feature_drift_loss(perm(gen, 4), perm(pos, 4), perm(unc, 2), 3, w[[2, 0, 1]])
    assert torch.allclose(a, b, rtol=1e-5)


def test_mae_mask_and_masked_loss():
    u = torch.rand(2000, 4, 4, generator=torch.Generator().manual_seed(0))
    m = patch_mask(u, (8, 8), 2, 0.5)
    assert m.shape == (2000, 1, 8, 8) and abs(float(m.mean()) - 0.5) < 0.01
    assert torch.equal(m[:, :, ::2, ::2], m[:, :, 1::2, 1::2])          # constant on 2x2 patches
    torch.manual_seed(0)
    model = MAEResNet(1, 10, ResNetConfig(width=8, layers=[1, 1, 1, 1]))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(10, (4,))
    mask = patch_mask(torch.rand(4, 4, 4), (8, 8), 2, 0.5)
    rec, ce, _ = mae_losses(model, x, y, mask)
    x3 = x + mask * 3.0                      # masked pixels are zeroed at the input ...
    recon, _ = model(x * (1 - mask))
    assert torch.equal(recon, model(x3 * (1 - mask))[0])        # ... so they cannot leak into it
    manual = ((recon - x) ** 2 * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3))
    assert torch.allclose(rec, manual, atol=1e-6)                # L2 on the masked region only
    assert ce.shape == (4,)


def test_cls_finetune_schedule():
    m = MAEPretraining(ResNetConfig(width=8), 0.5, 2, total_steps=100, cls_ft_steps=30, cls_warmup=10,
                       cls_lambda=0.1)
    assert [m.lambda_cls(s) for s in (0, 69, 70, 75, 80, 99)] == pytest.approx([0, 0, 0, 0.05, 0.1, 0.1])
