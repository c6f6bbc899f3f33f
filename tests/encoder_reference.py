"""Reference outputs of the official release's feature encoders for ``tests/test_encoder_reference.py``.

The check, as ``dit_reference.py`` does for the generator: our MAE-ResNet (``methods/drifting/encoder.py``,
``mae.py``, ``features.py``) and ConvNeXt-V2 feature path (``methods/drifting/convnext.py``) compute the
same functions as the release's ``models/mae_model.py`` ``MAEResNetJAX`` (the MAE loss with a given mask,
``get_activations``) and ``models/convnext.py`` ``ConvNextV2.get_activations`` with the pixel
preprocessing of ``build_activation_function`` (lambertae/drifting, commit accd0cf), given the same
weights and inputs. Weights come from the integer hash of ``dit_reference.hashed``; the release's outputs
are stored as fixed projections in ``encoder_reference.json``. To regenerate it (a separate environment
with jax, flax and einops, and the release's ``models/`` folder; nothing here is needed in CI):

    PYTHONPATH=. python tests/encoder_reference.py export /tmp/enc_weights.npz      # this project's venv
    /path/to/jax-venv/bin/python tests/encoder_reference.py reference /tmp/enc_weights.npz \\
        /path/to/drifting-checkout                                          # writes encoder_reference.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from dit_reference import command_line, hashed  # noqa: E402

JSON = Path(__file__).with_suffix(".json")
MAE = dict(width=32, layers=[1, 2, 1, 2], input_patch=2, every_k_block=2)   # the release: 32 groups in the decoder
MAE_SHAPE, CLASSES, BATCH, LAMBDA_CLS = (3, 32, 32), 10, 2, 0.3
LABELS = [3, 7]
CONVNEXT = dict(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32])
CONVNEXT_SHAPE = (3, 256, 256)                 # the pixel generators: shrunk to 224 (antialiased)


def _fill(module, salt: int) -> None:
    """Hashed weights; norm scales (the 1-D weights) around 1."""
    import torch
    with torch.no_grad():
        for i, (name, p) in enumerate(sorted(module.named_parameters())):
            one = name.endswith("weight") and p.dim() == 1
            p.copy_(hashed(p.numel(), salt + i).view_as(p) + (1.0 if one else 0.0))


def mae_model():
    """Our MAE-ResNet in fp64 with hashed weights, its input, labels and the (patchified-grid) mask."""
    import torch

    from methods.drifting.encoder import ResNetConfig
    from methods.drifting.mae import MAEResNet
    torch.manual_seed(0)
    net = MAEResNet(MAE_SHAPE[0], CLASSES, ResNetConfig(**MAE)).double()
    _fill(net, 0)
    x = (hashed(BATCH * 3 * 32 * 32, 999) * 5).view(BATCH, *MAE_SHAPE).double()
    grid = MAE_SHAPE[1] // MAE["input_patch"]
    cells = (hashed(BATCH * (grid // 2) ** 2, 777) < 0).double().view(BATCH, grid // 2, grid // 2)
    mask = cells.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, None]
    return net, x, torch.tensor(LABELS), mask


def convnext_model():
    """A tiny random ``ConvNextV2Model`` with hashed weights and an image batch in [-1, 1] (fp32: fp64
    depthwise convolutions at 224 x 224 are slow on CPUs)."""
    import torch
    from transformers import ConvNextV2Config, ConvNextV2Model
    torch.manual_seed(0)
    model = ConvNextV2Model(ConvNextV2Config(**CONVNEXT)).eval()
    _fill(model, 500)
    x = (hashed(BATCH * 3 * 256 * 256, 4242) * 5).clamp(-1, 1).view(BATCH, *CONVNEXT_SHAPE).float()
    return model, x


def projections(key: str, v) -> dict:
    """``v [B, T, D]`` -> its shape, per-sample mean and two fixed hashed projections (numpy only: the
    same numbers in both environments)."""
    import numpy as np
    v = np.asarray(v, dtype=np.float64)
    salt = sum(ord(c) * (i + 1) for i, c in enumerate(key))
    j = np.arange(v[0].size, dtype=np.int64)
    w = [((j * a + salt * 97531 + 12345) % (1 << 32)) / float(1 << 32) - 0.5 for a in (2654435761, 2246822519)]
    w = [wk.reshape(v.shape[1:]) for wk in w]
    return {"shape": list(v.shape), "mean": v.mean(axis=(1, 2)).round(8).tolist(),
            "proj": [[float(np.round((s * wj).sum(), 7)) for wj in w] for s in v]}


def export(path: str) -> None:
    import numpy as np
    net, x, y, mask = mae_model()
    cnx, xc = convnext_model()
    np.savez(path, x=x.numpy(), y=y.numpy(), mask=mask.numpy(), xc=xc.numpy(),
             **{"mae:" + k: v.detach().numpy() for k, v in net.state_dict().items()},
             **{"cnx:" + k: v.detach().numpy() for k, v in cnx.state_dict().items()})


def _mae_params(P: dict) -> dict:
    """Our state dict (``mae:`` names) as the release's MAEResNetJAX parameter tree."""
    def conv(n, bias=False):
        out = {"kernel": P[n + ".weight"].transpose(2, 3, 1, 0)}
        return {**out, "bias": P[n + ".bias"]} if bias else out

    def norm(n):
        return {"scale": P[n + ".weight"], "bias": P[n + ".bias"]}

    def cgr(n):
        return {"conv": conv(n + ".0"), "gn": norm(n + ".1")}
    enc = {"conv1": conv("encoder.stem.0"), "gn1": norm("encoder.stem.1")}
    for i, n in enumerate(MAE["layers"]):
        enc[f"layer{i + 1}_norm"] = norm(f"encoder.norms.{i}")
        stage = {}
        for k in range(n):
            b = f"encoder.stages.{i}.{k}."
            blk = {"conv1": conv(b + "conv1"), "gn1": norm(b + "gn1"), "conv2": conv(b + "conv2"), "gn2": norm(b + "gn2")}
            if b + "proj.0.weight" in P:
                blk.update(proj_conv=conv(b + "proj.0"), proj_gn=norm(b + "proj.1"))
            stage[f"layers_{k}"] = blk
        enc[f"stages_{i}"] = stage
    dec = {"bridge": cgr("decoder.bridge"), "head": conv("decoder.head", bias=True)}
    for up in ("up43", "up32", "up21", "up10"):
        d = f"decoder.{up}."
        dec[up] = {"concat_norm_fn": norm(d + "norm"), "proj": cgr(d + "proj"), "refine": cgr(d + "refine")}
    return {"encoder": enc, "decoder": dec, "fc": {"kernel": P["fc.weight"].T, "bias": P["fc.bias"]}}


def _convnext_params(P: dict) -> dict:
    """The HF ``ConvNextV2Model`` state dict (``cnx:`` names) as the release's ConvNextV2 tree."""
    def conv(n):
        return {"kernel": P[n + ".weight"].transpose(2, 3, 1, 0), "bias": P[n + ".bias"]}

    def ln(n):
        return {"weight": P[n + ".weight"], "bias": P[n + ".bias"]}

    def dense(n):
        return {"kernel": P[n + ".weight"].T, "bias": P[n + ".bias"]}
    tree = {"downsample_layers_0": {"layers_0": conv("embeddings.patch_embeddings"),
                                    "layers_1": ln("embeddings.layernorm")},
            "norm": {"scale": P["layernorm.weight"], "bias": P["layernorm.bias"]}}
    for i, depth in enumerate(CONVNEXT["depths"]):
        s = f"encoder.stages.{i}."
        if i > 0:
            tree[f"downsample_layers_{i}"] = {"layers_0": ln(s + "downsampling_layer.0"),
                                              "layers_1": conv(s + "downsampling_layer.1")}
        tree[f"stages_{i}"] = {f"layers_{k}": {
            "dwconv": conv(f"{s}layers.{k}.dwconv"), "norm": ln(f"{s}layers.{k}.layernorm"),
            "pwconv1": dense(f"{s}layers.{k}.pwconv1"), "pwconv2": dense(f"{s}layers.{k}.pwconv2"),
            "grn": {"gamma": P[f"{s}layers.{k}.grn.weight"], "beta": P[f"{s}layers.{k}.grn.bias"]}}
            for k in range(depth)}
    return tree


def reference(path: str, checkout: str) -> None:
    """Run the release's MAEResNetJAX and ConvNextV2 (fp32, as released) on the exported weights."""
    import types

    import jax
    import jax.numpy as jnp
    import numpy as np
    stubs = {"utils": {}, "utils.env": {"HF_REPO_ID": "", "HF_ROOT": ""},
             "utils.init_util": {"load_init_entry": None, "put_like": None},
             "utils.hsdp_util": {"enforce_ddp": lambda x: x, "get_global_mesh": None},
             "utils.logging": {"log_for_0": print}, "torch": {}}      # convnext.py imports torch, unused here
    for mod, attrs in stubs.items():
        sys.modules[mod] = types.SimpleNamespace(**attrs)
    sys.path.insert(0, checkout)
    import models.mae_model as mm
    from models.convnext import ConvNextV2
    del sys.modules["torch"]                                                       # einops probes for it
    d = np.load(path)
    f32 = lambda t: jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), t)  # noqa: E731
    out: dict = {"source": "lambertae/drifting models/mae_model.py MAEResNetJAX and models/convnext.py "
                           "ConvNextV2 (accd0cf), fp32"}

    mae = mm.MAEResNetJAX(num_classes=CLASSES, in_channels=MAE_SHAPE[0], base_channels=MAE["width"],
                          layers=tuple(MAE["layers"]), input_patch_size=MAE["input_patch"], patch_size=2)
    params = {"params": f32(_mae_params({k[4:]: d[k] for k in d.files if k.startswith("mae:")}))}
    x = jnp.asarray(d["x"], jnp.float32).transpose(0, 2, 3, 1)                    # BCHW -> BHWC
    init = mae.init({"params": jax.random.PRNGKey(0), "masking": jax.random.PRNGKey(1)}, x, jnp.asarray(LABELS),
                    lambda_cls=LAMBDA_CLS, mask_ratio_min=0.5, mask_ratio_max=0.5)
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(params), "MAE parameter trees differ"
    mask = jnp.asarray(d["mask"], jnp.float32).transpose(0, 2, 3, 1)
    mm.make_patch_mask = lambda *a, **k: mask                                      # the exported mask
    _, metrics = mae.apply(params, x, jnp.asarray(LABELS), lambda_cls=LAMBDA_CLS, mask_ratio_min=0.5,
                           mask_ratio_max=0.5, rngs={"masking": jax.random.PRNGKey(2)})
    out["mae_loss"] = {k: np.asarray(metrics[k]).astype(float).round(7).tolist() for k in ("recon_loss", "cls_loss")}
    feats = mae.apply(params, x, method=mae.get_activations)
    out["mae_features"] = {k: projections(k, v) for k, v in feats.items()}

    cnx = ConvNextV2(depths=tuple(CONVNEXT["depths"]), dims=tuple(CONVNEXT["hidden_sizes"]))
    cparams = {"params": f32(_convnext_params({k[4:]: d[k] for k in d.files if k.startswith("cnx:")}))}
    cinit = cnx.init(jax.random.PRNGKey(0), jnp.ones((1, 224, 224, 3)))
    assert jax.tree_util.tree_structure(cinit) == jax.tree_util.tree_structure(cparams), "ConvNeXt trees differ"
    xc = (jnp.asarray(d["xc"], jnp.float32) + 1) / 2                             # build_activation_function:
    xc = (xc.transpose(0, 2, 3, 1) - jnp.array([0.485, 0.456, 0.406])) / jnp.array([0.229, 0.224, 0.225])
    cfeats = cnx.apply(cparams, xc, method=cnx.get_activations)
    names = {k: k.replace("convenxt", "convnext").replace("global", "convnext_global") for k in cfeats}
    out["convnext_features"] = {names[k]: projections(names[k], v) for k, v in cfeats.items()}
    JSON.write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    command_line(export, reference, __doc__)
