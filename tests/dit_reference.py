"""Reference output of the official drifting generator (JAX ``DitGen``) for ``tests/test_dit.py``.

The check: our DiT and the release's ``models/generator.py`` (lambertae/drifting, commit accd0cf),
given the same weights and inputs, compute the same function. Weights come from a fixed integer hash
(no RNG, so they are the same on every machine and torch version) and the official output is stored
in ``dit_reference.json`` next to this file. To regenerate it (needs a checkout of the release and a
separate environment with jax and flax; nothing here is needed in CI):

    PYTHONPATH=. python tests/dit_reference.py export /tmp/dit_weights.npz     # this project's venv
    /path/to/jax-venv/bin/python tests/dit_reference.py reference /tmp/dit_weights.npz \\
        /path/to/drifting-checkout                                      # writes dit_reference.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

JSON = Path(__file__).with_suffix(".json")
CONFIG = dict(patch_size=2, hidden=64, depth=2, heads=4, n_context_tokens=4, n_style_tokens=4, style_codebook=8)
SHAPE, CLASSES, BATCH = (1, 8, 8), 10, 4
Y, ALPHA = [0, 3, 10, 7], [1.0, 1.5, 2.5, 4.0]          # 10 is the null class
STYLE = [[0, 7, 3, 5], [1, 1, 6, 2], [4, 0, 2, 7], [6, 5, 7, 0]]


def hashed(numel: int, salt: int):
    """Values in [-0.2, 0.2) from an integer hash of (position, salt): deterministic everywhere."""
    import torch
    j = torch.arange(numel, dtype=torch.int64)
    u = ((j * 2654435761 + salt * 40503 + 12345) % (1 << 32)).double() / float(1 << 32)
    return 0.4 * (u - 0.5)


def reference_model():
    """Our DiT in fp64 with hashed weights, and its inputs (x, cond)."""
    import torch

    from methods.backbones.dit import DiT
    from methods.base import BackboneIO
    net = DiT(BackboneIO(SHAPE, SHAPE, ("y", "alpha", "style"), CLASSES, null_class=True),
              DiT.Config(**CONFIG)).double()
    with torch.no_grad():
        for i, (name, p) in enumerate(sorted(net.named_parameters())):
            p.copy_(hashed(p.numel(), i).view_as(p) + (1.0 if name.endswith("norm.weight") or ".norm" in name else 0))
    x = (hashed(BATCH * 64, 999) * 5).view(BATCH, *SHAPE)
    cond = {"y": torch.tensor(Y), "alpha": torch.tensor(ALPHA, dtype=torch.float64), "style": torch.tensor(STYLE)}
    return net, x, cond


def export(path: str) -> None:
    import numpy as np
    net, x, cond = reference_model()
    np.savez(path, x=x.numpy(), **{"p:" + k: v.detach().numpy() for k, v in net.state_dict().items()})


def reference(path: str, checkout: str) -> None:
    """Run the release's DitGen (fp32 compute, as released) on the exported weights; write the JSON."""
    import types

    import jax
    import jax.numpy as jnp
    import numpy as np
    for mod, attrs in {"utils": {}, "utils.hsdp_util": {"enforce_ddp": lambda x: x},
                       "utils.misc": {"ddp_rand_func": None}, "utils.env": {"HF_REPO_ID": "", "HF_ROOT": ""}}.items():
        sys.modules[mod] = types.SimpleNamespace(**attrs)
    sys.path.insert(0, checkout)
    from models.generator import DitGen
    d = np.load(path)
    P = {k[2:]: d[k] for k in d.files if k.startswith("p:")}

    def lin(n):
        return {"Dense_0": {"kernel": P[n + ".weight"].T, "bias": P[n + ".bias"]}}

    def block(i):
        b = f"blocks.{i}."
        return {"Attention_0": {"TorchLinear_0": lin(b + "attn.qkv"), "TorchLinear_1": lin(b + "attn.proj"),
                                "q_norm": {"weight": P[b + "attn.q_norm.weight"]},
                                "k_norm": {"weight": P[b + "attn.k_norm.weight"]}},
                "RMSNorm_0": {"weight": P[b + "norm1.weight"]}, "RMSNorm_1": {"weight": P[b + "norm2.weight"]},
                "SwiGLUFFN_0": {"TorchLinear_0": lin(b + "mlp.w1"), "TorchLinear_1": lin(b + "mlp.w3"),
                                "TorchLinear_2": lin(b + "mlp.w2")},
                "TorchLinear_0": lin(b + "ada.1")}
    c = CONFIG
    params = {"params": {
        "Embed_0": {"embedding": P["cond.classes.weight"]},
        **{f"noise_embeds_{i}": {"embedding": P["cond.style"][i]} for i in range(c["n_style_tokens"])},
        "TimestepEmbedder_0": {"TorchLinear_0": lin("cond.alpha.mlp.0"), "TorchLinear_1": lin("cond.alpha.mlp.2")},
        "RMSNorm_0": {"weight": P["cond.alpha_norm.weight"]},
        "LightningDiT_0": {"TorchLinear_0": lin("patch"), "TorchLinear_1": lin("ctx_proj"), "pos_embed": P["pos_embed"],
                           "cls_embed": P["ctx_embed"], **{f"blocks_{i}": block(i) for i in range(c["depth"])},
                           "FinalLayer_0": {"RMSNorm_0": {"weight": P["final.norm.weight"]},
                                            "TorchLinear_0": lin("final.ada.1"), "TorchLinear_1": lin("final.linear")}}}}
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), params)
    model = DitGen(cond_dim=c["hidden"], num_classes=CLASSES + 1, noise_classes=c["style_codebook"],
                   noise_coords=c["n_style_tokens"], input_size=SHAPE[1], in_channels=SHAPE[0],
                   n_cls_tokens=c["n_context_tokens"], patch_size=c["patch_size"], hidden_size=c["hidden"],
                   depth=c["depth"], num_heads=c["heads"], out_channels=SHAPE[0], use_qknorm=True, use_swiglu=True,
                   use_rope=True, use_rmsnorm=True)

    def run(mod, y, alpha, style, x):
        return mod.generate_image(x, mod.c_cfg_noise_to_cond(y, alpha, style))
    init = model.init(jax.random.PRNGKey(0), jnp.asarray(Y), jnp.asarray(ALPHA), jnp.asarray(STYLE),
                      jnp.zeros((BATCH, SHAPE[1], SHAPE[2], SHAPE[0])), method=run)
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(params), "parameter trees differ"
    x = jnp.asarray(d["x"], jnp.float32).transpose(0, 2, 3, 1)                  # BCHW -> the release's BHWC
    out = np.asarray(model.apply(params, jnp.asarray(Y), jnp.asarray(ALPHA), jnp.asarray(STYLE), x, method=run))
    JSON.write_text(json.dumps({"source": "lambertae/drifting models/generator.py DitGen (accd0cf), fp32",
                                "output_bchw": out.transpose(0, 3, 1, 2).astype(float).round(7).tolist()}) + "\n")


def command_line(export, reference, doc: str) -> None:
    """``export PATH`` (this project's venv) or ``reference PATH CHECKOUT`` (the JAX environment)."""
    if sys.argv[1:2] == ["export"]:
        export(sys.argv[2])
    elif sys.argv[1:2] == ["reference"]:
        reference(sys.argv[2], sys.argv[3])
    else:
        sys.exit(doc)


if __name__ == "__main__":
    command_line(export, reference, __doc__)
