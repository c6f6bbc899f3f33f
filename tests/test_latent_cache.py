"""task=cache_latents and data=imagenet_latent on a tiny ImageFolder and a tiny random AutoencoderKL: what
the cache holds, reruns that write nothing, shards equal to one process, a stopped build finished later,
refusal to mix builds, keyed flips, decoding, and the one-line errors."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.config import compose_config
from bench.data import build_data
from bench.data import latent_cache as lc
from bench.data.imagefolder import center_crop_arr
from bench.data.vae import SCALE, load_vae, weights_sha256
from bench.errors import ConfigError
from bench.tasks import execute, prepare
from tests.imagenet_fixtures import tiny_vae, write_imagefolder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("latents")
    return {"root": write_imagefolder(base / "imagenet"), "vae": tiny_vae(base / "vae"), "base": base}


def data_cfg(world, cache, **data) -> dict:
    cfg = {"root": world["root"], "vae": world["vae"], "num_classes": 3, "resolution": 32, "any_resolution": True,
           "num_workers": 0, "cache": world["base"] / cache, **data}
    return {k: str(v) if isinstance(v, Path) else v for k, v in cfg.items()}


def overrides(world, cache, **data):
    return ["data=imagenet_latent", "device=cpu", *(f"data.{k}={v}" for k, v in data_cfg(world, cache, **data).items())]


def build(world, cache, *extra, **data):
    return execute(prepare(compose_config(["task=cache_latents", "cache.chunk=5", "cache.batch_size=4", *extra,
                                           *overrides(world, cache, **data)])))


def source(world, cache, **data):
    return build_data({"name": "imagenet_latent", **data_cfg(world, cache, **data)})


def digest(folder) -> str:
    return hashlib.sha256((folder / lc.LATENTS).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mean_cache(world):
    return build(world, "mean", posterior="mean")


@pytest.fixture(scope="module")
def sample_cache(world):
    return build(world, "one")


def test_the_cache_holds_scaled_vae_means_of_the_centre_crop_and_its_mirror(world, mean_cache):
    m = lc.read_manifest(mean_cache)
    vae = load_vae(str(world["vae"]))
    assert m["vae_sha256"] == weights_sha256(vae.model) and m["scale"] == SCALE == 0.18215
    assert (m["count"], m["chunk"], m["shape"], m["posterior"]) == (18, 5, [18, 2, 4, 4, 4], "mean")
    assert lc.done_chunks(mean_cache) == {0, 1, 2, 3}
    latents, labels = lc.open_latents(mean_cache), np.load(mean_cache / lc.LABELS)
    assert latents.dtype == np.float16 and labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    for i, path in ((0, "n01440764/n01440764_0.JPEG"), (13, "n01484850/n01484850_1.JPEG")):
        with Image.open(world["root"] / "train" / path) as im:
            crop = torch.from_numpy(center_crop_arr(im.convert("RGB"), 32).copy()).permute(2, 0, 1)[None]
        x = crop.float() / 127.5 - 1
        with torch.no_grad():
            want = torch.cat([vae.model.encode(v).latent_dist.mean for v in (x, x.flip(-1))]) * 0.18215
        torch.testing.assert_close(torch.from_numpy(latents[i].astype(np.float32)), want, atol=2e-3, rtol=2e-3)


def test_a_rerun_writes_nothing(world, mean_cache, capsys):
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in mean_cache.iterdir()}
    build(world, "mean", posterior="mean")
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in mean_cache.iterdir()} == before


def test_two_shards_write_the_cache_one_process_writes(world, sample_cache, mean_cache):
    one = sample_cache
    for shard in (1, 0):                    # and in other batches: the posterior noise is keyed by image
        build(world, "two", "cache.shards=2", f"cache.shard={shard}", "cache.batch_size=3")
    two = world["base"] / "two"
    assert sorted(p.name for p in two.glob("done-*")) == ["done-0-of-2.json", "done-1-of-2.json"]
    assert lc.done_chunks(two) == {0, 1, 2, 3} and digest(one) == digest(two)
    sample, mean = lc.open_latents(one), lc.open_latents(mean_cache)
    assert np.abs(sample.astype(np.float32) - mean.astype(np.float32)).max() > 1e-3     # posterior noise is drawn


def test_stopped_and_interrupted_builds_lose_at_most_one_chunk_and_a_rerun_finishes(world, sample_cache, monkeypatch):
    from bench.tasks import cache_latents

    folder = world["base"] / "stopped"
    build(world, "stopped", "cache.max_chunks=1")
    assert lc.done_chunks(folder) == {0}
    encode, calls = cache_latents.encode_batch, []

    def killed_in_chunk_2(spec, x, index):         # chunks of 5 in batches of 4: chunk 2's second batch
        calls.append(index)
        if index.start == 14:
            raise KeyboardInterrupt
        return encode(spec, x, index)

    monkeypatch.setattr(cache_latents, "encode_batch", killed_in_chunk_2)
    with pytest.raises(KeyboardInterrupt):
        build(world, "stopped")
    assert [r.start for r in calls] == [5, 9, 10, 14] and lc.done_chunks(folder) == {0, 1}
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match=r"2 of 4 chunks are built; finish it with: python -m bench.run "
                                                r"task=cache_latents data=imagenet_latent"):
        source(world, "stopped")
    build(world, "stopped")
    assert digest(folder) == digest(sample_cache)


def test_a_cache_of_another_build_is_refused(world, mean_cache, tmp_path):
    other = tiny_vae(tmp_path / "other_vae", seed=1)
    with pytest.raises(ConfigError, match=r"holds another build \(vae_sha256: '[0-9a-f]+' -> '[0-9a-f]+'\)"):
        build(world, "mean", posterior="mean", vae=other)
    with pytest.raises(ConfigError, match=r"resolution: 32 -> 16"):
        build(world, "mean", posterior="mean", resolution=16)
    with pytest.raises(ValueError, match=r"posterior: cache 'mean', config 'sample'"):
        source(world, "mean")
    with pytest.raises(ValueError, match="not the ones the cache was built with"):
        source(world, "mean", posterior="mean", vae=other)


def test_shares_multiply_array_jobs_by_processes(world, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    spec = prepare(compose_config(["task=cache_latents", "cache.shards=3", "cache.shard=2", *overrides(world, "x")]))
    assert (spec.share, spec.shares) == (5, 6)
    with pytest.raises(ConfigError, match=r"cache.shard=3 must be in \[0, cache.shards=3\)"):
        prepare(compose_config(["task=cache_latents", "cache.shards=3", "cache.shard=3", *overrides(world, "x")]))


def test_training_reads_a_keyed_flip_of_each_cached_pair(world, mean_cache):
    data = source(world, "mean", posterior="mean", num_workers=2)
    assert data.spec.shape == (4, 4, 4) and data.spec.decoded_shape == (3, 32, 32)
    latents = torch.from_numpy(lc.open_latents(mean_cache).astype(np.float32))

    def flips(seed: int) -> list[int]:
        out = []
        for step in range(4):
            for x in data.batch(step, seed, 0, 1, 9, "cpu").x:
                match = [f for f in (0, 1) if any(torch.equal(x, row) for row in latents[:, f])]
                assert len(match) == 1
                out += match
        return out

    seed0 = flips(0)
    assert 0.25 < np.mean(seed0) < 0.75 and flips(1) != seed0
    again = source(world, "mean", posterior="mean", num_workers=0)
    assert torch.equal(again.batch(2, 0, 0, 1, 9, "cpu").x, data.batch(2, 0, 0, 1, 9, "cpu").x)


def test_decode_undoes_the_scale_with_the_caches_vae(world, mean_cache):
    data = source(world, "mean", posterior="mean")
    z = torch.randn(3, 4, 4, 4)
    with torch.no_grad():
        want = load_vae(str(world["vae"])).model.decode(z / 0.18215).sample.clamp(-1, 1)
    out = data.decode(z)
    assert out.shape == (3, 3, 32, 32)
    torch.testing.assert_close(out, want)


def test_missing_cache_and_missing_vae_are_one_line(world, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as e:
        source(world, "absent")
    msg = str(e.value)
    assert "no latent cache there; build it with: python -m bench.run task=cache_latents data=imagenet_latent" in msg
    assert f"data.cache={world['base'] / 'absent'}" in msg and "\n" not in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConfigError) as e:
        build(world, "x", vae="stabilityai/sd-vae-ft-mse")
    msg = str(e.value)
    assert "data.vae=stabilityai/sd-vae-ft-mse: not in the local Hugging Face cache" in msg
    assert "save_pretrained('PATH')" in msg and "data.vae=PATH" in msg and "\n" not in msg
    (tmp_path / "notavae").mkdir()
    with pytest.raises(ConfigError, match="holds no config.json"):
        build(world, "x", vae=tmp_path / "notavae")
    with pytest.raises(ConfigError, match="task=cache_latents builds data=imagenet_latent"):
        prepare(compose_config(["task=cache_latents", "data=digits"]))
