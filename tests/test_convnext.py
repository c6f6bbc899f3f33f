"""The ConvNeXt-V2 feature path of the pixel recipes: loading from a local folder, the one-line error offline
without weights, and gradients reaching the generator's images (the values are checked against the release
in test_encoder_reference.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")


def test_local_folder_loads_and_gradients_reach_the_images(tmp_path):
    from transformers import ConvNextV2Config, ConvNextV2Model

    from methods.drifting.convnext import load_convnext
    torch.manual_seed(0)
    ConvNextV2Model(ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16])).save_pretrained(tmp_path)
    feats = load_convnext(str(tmp_path))
    assert len(feats.sha256) == 64 and not any(p.requires_grad for p in feats.parameters())
    assert not feats.train().training                                   # frozen: never in training mode
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_()
    out = feats(x)
    assert {k: tuple(v.shape) for k, v in out.items() if not k.endswith(("_mean", "_std"))} == {
        "convnext_stage_1": (2, 28 * 28, 8), "convnext_stage_2": (2, 14 * 14, 16), "convnext_stage_3": (2, 49, 16)}
    assert {f"convnext_stage_{i}_{s}" for i in range(4) for s in ("mean", "std")} <= set(out)
    sum(v.square().sum() for v in out.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="RGB images"):
        feats(torch.zeros(1, 4, 32, 32))


@pytest.mark.slow
def test_hub_id_offline_fails_in_one_line_that_says_how_to_supply_it():
    code = ("from methods.drifting.convnext import load_convnext\n"
            "try:\n load_convnext('facebook/convnextv2-base-22k-224')\n"
            "except FileNotFoundError as e:\n print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp/nohome"}).stdout.strip()
    assert len(out.splitlines()) == 1 and "method.convnext" in out and "--local-dir DIR" in out, out
