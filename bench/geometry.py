"""What a run's batches were made of, for its record (``record["geometry"]``): the batch geometry, the images
and epochs seen, and the hashes of the data, VAE and encoders it was trained with.

The single-GPU fork of the release reproduces the ablation at FID 49.6 against the release's 8.34, and the
difference is batch geometry and accelerator count (PUBLIC_NUMBERS.md): a record that says only "drifting
B/2, 30k steps" cannot be compared with another. So every record names:

- ``world_size`` and the global and per-rank ``train.batch_size`` (real samples loaded per step; for
  conditional drifting the samples pushed into the queues, the release's ``push_per_step``);
- conditional drifting: ``N_c x N_neg x N_pos x N_unc`` (``classes_per_step`` is global, split over the
  ranks: ``N_c_per_rank``), the queue sizes (per process, as the release's per-host banks), and the
  generated, positive and unconditional samples per step;
- ``seen``: real images loaded and, for drifting, generated samples; ``epochs`` by the paper's definition
  (generated samples / training-set size, PAPER.md 1.5: 30k x 4096 / 1.28M = 96) and by real images;
- ``provenance``: the training set's size and identity (the latent cache's file-list and VAE hashes, or
  the image folder's file-list hash), and the encoder and ConvNeXt hashes the method recorded.
"""
from __future__ import annotations


def data_identity(data) -> dict:
    """The hashes that name a data source: a latent cache's manifest, or a source's ``identity``."""
    manifest = getattr(data, "manifest", None)
    if manifest:
        keys = ("files_sha256", "count", "vae", "vae_sha256", "posterior", "resolution", "split")
        return {k: manifest[k] for k in keys if k in manifest}
    return dict(getattr(data, "identity", None) or {})


def dataset_size(data) -> int | None:
    n = getattr(data, "n", None)
    if n is None and getattr(data, "x", None) is not None:
        n = len(data.x)
    return int(n) if n is not None else None


def batch_geometry(config: dict, data, world: int, steps: int) -> dict:
    """The geometry block of a record from the resolved ``config``, the data source and the world size."""
    train, method = config["train"], config["method"]
    batch = int(train["batch_size"])
    out: dict = {"world_size": world, "batch_size": batch, "batch_per_rank": batch // max(world, 1)}
    seen = {"real": steps * batch}
    if method.get("name") == "drifting" and method.get("conditional"):
        nc, neg, pos = int(method["classes_per_step"]), int(method["gen_per_class"]), int(method["pos_per_class"])
        unc = int(method["unc_per_class"]) if method.get("cfg", True) else 0
        out.update({"N_c": nc, "N_neg": neg, "N_pos": pos, "N_unc": unc, "N_c_per_rank": nc // max(world, 1),
                    "class_queue": method["class_queue"], "global_queue": method["global_queue"],
                    "generated_per_step": nc * neg, "positives_per_step": nc * pos,
                    "unconditional_per_step": nc * unc, "shape": f"{nc} x {neg} x {pos} x {unc}"})
        seen["generated"] = steps * nc * neg
    n = dataset_size(data)
    out["seen"] = seen
    if n:
        out["epochs"] = {k: round(v / n, 3) for k, v in seen.items()}
    prov = {"dataset_size": n, **data_identity(data)}
    for key in ("encoder_path", "encoder_sha256", "convnext", "convnext_sha256"):
        if method.get(key):
            prov[key] = method[key]
    out["provenance"] = prov
    return out
