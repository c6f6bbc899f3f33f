"""The feature encoders compute the release's functions (``tests/encoder_reference.py`` made the reference):
the MAE-ResNet's masked-reconstruction and classification losses and its ``get_activations`` vector sets,
and the ConvNeXt-V2 feature path, on the same weights and inputs as the release's JAX models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.encoder_reference import JSON, convnext_model, mae_model, projections

REF = json.loads(JSON.read_text())


def close(ours: dict, ref: dict, rel: float = 2e-5) -> None:
    assert sorted(ours) == sorted(ref), set(ours) ^ set(ref)
    for key, want in ref.items():
        got = projections(key, ours[key].detach().numpy())
        assert got["shape"] == want["shape"], key
        for a, b in ((got["proj"], want["proj"]), (got["mean"], want["mean"])):
            a, b = np.asarray(a), np.asarray(b)
            assert np.abs(a - b).max() <= rel * max(1.0, np.abs(b).max()), (key, a, b)


def test_mae_losses_match_the_release():
    from methods.drifting.mae import mae_losses
    net, x, y, mask = mae_model()
    rec, ce, _ = mae_losses(net, x, y, mask)
    ref = REF["mae_loss"]
    torch.testing.assert_close(rec, torch.tensor(ref["recon_loss"], dtype=rec.dtype), rtol=2e-6, atol=0)
    torch.testing.assert_close(ce, torch.tensor(ref["cls_loss"], dtype=ce.dtype), rtol=2e-6, atol=0)


def test_mae_feature_vectors_match_the_release_get_activations():
    from methods.drifting.features import feature_vectors
    net, x, _, _ = mae_model()
    with torch.no_grad():
        close(feature_vectors(net.encoder, x, (2, 4), raw=False), REF["mae_features"])


def test_convnext_features_match_the_release():
    pytest.importorskip("transformers")
    from methods.drifting.convnext import ConvNeXtFeatures
    model, x = convnext_model()
    with torch.no_grad():
        close(ConvNeXtFeatures(model)(x), REF["convnext_features"])


def test_a_checkpoint_of_the_old_groupnorm_format_is_refused_with_the_command(tmp_path):
    """Format 1 encoders used another GroupNorm grouping at small widths: loading one would silently change
    its function, so it is refused in one line that says how to make it again."""
    from methods.drifting.mae import load_encoder
    old = tmp_path / "digits_tiny-digits-s0.pt"
    torch.save({"format": "driftbench-encoder/1", "state_dict": {}}, old)
    with pytest.raises(ValueError, match=r"format driftbench-encoder/2 \(found driftbench-encoder/1\); make it "
                                         r"again: python -m bench.run task=pretrain_encoder data=digits$"):
        load_encoder(old, how_to_make="python -m bench.run task=pretrain_encoder data=digits")
