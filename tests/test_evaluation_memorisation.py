"""The memorisation check (the paper's Fig. 6) on tiny images with a tiny feature extractor made here:
copies of training images find themselves, the sharded search equals the whole one, the report draws it."""
import numpy as np
import pytest
import torch
from torch import nn

from bench.evaluation import memorisation
from bench.report.figures_eval import memorisation_grids
from methods.base import DataSpec
from methods.harness.dist import DistEnv


class TinyImages:
    """A data source of 37 random 3 x 6 x 6 training images in [-1, 1]."""

    def __init__(self):
        self.spec = DataSpec("tiny", (3, 6, 6), 0, "images", (-1.0, 1.0))
        self.x = torch.rand(37, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1


def tiny_extractor():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()).eval()
    return lambda x: net(x).detach()


def test_copies_find_themselves_and_shards_merge_exactly(tmp_path):
    data, extract = TinyImages(), tiny_extractor()
    queries = torch.cat([data.x[[5, 30, 12]], torch.zeros(1, 3, 6, 6)])
    whole = memorisation.TrainBank(data, extract, DistEnv(), batch=8)
    sims, idx = memorisation.nearest_training(queries, whole, extract, DistEnv(), k=4, batch=8)
    assert idx[:3, 0].tolist() == [5, 30, 12]
    torch.testing.assert_close(sims[:3, 0], torch.ones(3))                 # cosine similarity of a copy
    assert (sims[:, :-1] >= sims[:, 1:]).all() and (sims <= 1 + 1e-6).all()
    brute = torch.nn.functional.normalize(extract(queries), dim=-1) @ torch.nn.functional.normalize(
        extract(data.x), dim=-1).T
    torch.testing.assert_close(sims, brute.topk(4, dim=1).values)
    q = memorisation.embed(extract, queries, 8)
    parts = [memorisation.TrainBank(data, extract, DistEnv(rank=r, world=3), batch=5).nearest(q, 4) for r in range(3)]
    merged = memorisation.merge_top(torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1), 4)
    torch.testing.assert_close(merged[0], sims)
    assert torch.equal(merged[1], idx)
    assert memorisation._columns(37, 3, 4) == [4, 4, 4] and memorisation._columns(2, 3, 4) == [0, 1, 1]


def test_grid_file_and_report_figure(tmp_path):
    data, extract = TinyImages(), tiny_extractor()
    queries = data.x[[3, 4]] + 0.01
    bank = memorisation.TrainBank(data, extract, DistEnv())
    sims, idx = memorisation.nearest_training(queries, bank, extract, DistEnv(), k=3)
    run_dir = tmp_path / "runs" / "r"
    summary = memorisation.write_grid(run_dir / "memorisation_x.npz", queries, sims, idx, bank.get, (-1.0, 1.0),
                                      {"extractor": "tiny"})
    assert summary["n_queries"] == 2 and summary["k"] == 3 and summary["top1_similarity_mean"] > 0.99
    with np.load(run_dir / "memorisation_x.npz") as z:
        assert z["queries"].shape == (2, 6, 6, 3) and z["neighbours"].shape == (2, 3, 6, 6, 3)
        assert z["index"][:, 0].tolist() == [3, 4]
        np.testing.assert_array_equal(z["neighbours"][0, 0], ((data.x[3] + 1) * 127.5).round().clamp(0, 255)
                                      .to(torch.uint8).permute(1, 2, 0).numpy())

    class Results:
        def run_dir(self, rid):
            return tmp_path / "runs" / rid

    records = {"r": {"evals": [{"weights": "raw", "nfe": 1, "guidance": 1.0, "memorisation": summary}]}}
    fig = memorisation_grids(records, Results(), "tiny")
    assert fig is not None and fig.uri.startswith("data:image/png;base64,")
    assert "tiny cosine similarity" in fig.alt


def tiny_clip(path):
    """A randomly initialised CLIP (16-wide, one layer, 32 x 32 input) saved where transformers reads it."""
    from transformers import CLIPConfig, CLIPModel

    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    cfg = CLIPConfig(text_config={**small, "vocab_size": 99, "max_position_embeddings": 8,
                                  "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                     vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(path)
    return path


transformers = pytest.importorskip("transformers")


def test_clip_features_from_a_local_folder_and_the_offline_refusal(tmp_path):
    from bench.evaluation import clip

    tiny_clip(tmp_path / "clip")
    clip.check(f"clip:{tmp_path / 'clip'}")
    feats = clip.ClipFeatures(f"clip:{tmp_path / 'clip'}", (-1.0, 1.0))
    x = TinyImages().x[:3]
    out = feats(x)
    assert out.shape == (3, 8) and torch.allclose(out.norm(dim=1), torch.ones(3))
    assert feats.preprocess(x).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="CLIP weights 'nobody/absent-clip' are not on this machine") as e:
        clip.check("clip:nobody/absent-clip")
    assert "\n" not in str(e.value) and "eval.memorisation_features=clip:PATH" in str(e.value)
    with pytest.raises(ValueError, match="choose clip, clip:HUB_ID_OR_PATH or inception"):
        clip.source("dino")


def test_a_dataloader_source_serves_its_training_images(tmp_path):
    from bench.data import build_data
    from tests.imagenet_fixtures import write_imagefolder

    data = build_data({"name": "imagenet_pixel", "root": str(write_imagefolder(tmp_path / "imagenet")),
                       "num_classes": 3, "resolution": 16, "any_resolution": True, "augment": False, "num_workers": 0})
    n, get = memorisation.training_images(data)
    x = get(0, 5)
    assert n == 18 and x.shape == (5, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    extract = tiny_extractor()
    bank = memorisation.TrainBank(data, extract, DistEnv(), batch=4)
    sims, idx = memorisation.nearest_training(get(7, 8), bank, extract, DistEnv(), k=2)
    assert idx[0, 0] == 7 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
