"""data=imagenet_pixel: the ADM crop, labels from sorted synset folders, one-line layout errors, keyed
augmentation, and a DataLoader (with worker processes) whose order is a function of (seed, step)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import build_data
from bench.data.augment import KeyedAugment
from bench.data.imagefolder import center_crop_arr
from tests.conftest import run_bench
from tests.imagenet_fixtures import COLOURS, WNIDS, write_imagefolder

LAYOUT = "<root>/train/<wnid>/*.JPEG"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("imagenet"))


def pixel(root, **kw):
    cfg = {"name": "imagenet_pixel", "root": None if root is None else str(root), "num_classes": 3, "resolution": 16,
           "any_resolution": True, "num_workers": 0, **kw}
    return build_data(cfg)


def test_centre_crop_halves_with_box_then_crops_the_middle():
    # 48 x 16 made of constant 2 x 2 blocks -> BOX halving (short side 16 >= 2 * 8) gives the block values
    # exactly, 24 x 8; the short side is then 8 already; the centre crop is columns 8..16.
    blocks = np.random.default_rng(0).integers(0, 256, (8, 24, 3), dtype=np.uint8)
    image = Image.fromarray(blocks.repeat(2, axis=0).repeat(2, axis=1))
    np.testing.assert_array_equal(center_crop_arr(image, 8), blocks[:, 8:16])
    odd = center_crop_arr(Image.fromarray(np.zeros((37, 51, 3), dtype=np.uint8)), 16)
    assert odd.shape == (16, 16, 3)


def test_labels_are_sorted_synset_positions_and_travel_with_their_images(root):
    data = pixel(root, augment=False)
    assert data.spec.shape == (3, 16, 16) and data.spec.num_classes == 3
    batch = data.batch(0, 0, 0, 1, 18, "cpu")                    # one epoch: every image once
    assert sorted(batch.y.tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    colour = ((batch.x + 1) * 127.5).mean(dim=(2, 3))          # the ramp and the flip leave the mean alone
    nearest = torch.cdist(colour, torch.as_tensor(COLOURS[:3], dtype=torch.float32)).argmin(1)
    assert torch.equal(nearest, batch.y)


def test_a_subset_of_classes_needs_num_classes_to_say_so(root):
    with pytest.raises(ValueError, match=r"holds 3 class folders but data.num_classes=1000; .*data.num_classes=3"):
        pixel(root, num_classes=1000)


def test_layout_problems_are_one_line_naming_data_root_and_the_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTBENCH_IMAGENET", raising=False)
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "x.JPEG")
    empty = tmp_path / "empty" / "train" / WNIDS[0]
    empty.mkdir(parents=True)
    cases = {None: "data.root is not set and $DRIFTBENCH_IMAGENET is empty",
             str(tmp_path / "absent"): "no such folder",
             str(tmp_path): "has no train/ folder",
             str(tmp_path / "flat"): "train/ holds no class folders",
             str(tmp_path / "empty"): f"no images in 1 class folder(s) of train/ ({WNIDS[0]})"}
    for where, what in cases.items():
        with pytest.raises(FileNotFoundError) as e:
            pixel(where, num_classes=1)
        msg = str(e.value)
        assert what in msg and "data.root" in msg and LAYOUT in msg and "\n" not in msg, msg


def test_the_first_command_without_imagenet_is_one_line_and_exit_2(results):
    proc = run_bench("method=drifting", "data=imagenet_pixel", results=results, check=False,
                     extra_env={"DRIFTBENCH_IMAGENET": ""})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.root" in lines[0] and "DRIFTBENCH_IMAGENET" in lines[0] and LAYOUT in lines[0]
    assert not results.exists()


def test_augmentation_is_keyed_by_seed_and_sample_and_leaves_the_global_rng_alone():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    aug = KeyedAugment(16)
    state = torch.get_rng_state()
    a = [np.asarray(aug(image, 0, k)) for k in range(6)]
    assert torch.equal(state, torch.get_rng_state())
    assert all(x.shape == (16, 16, 3) for x in a)
    assert all(np.array_equal(x, np.asarray(aug(image, 0, k))) for k, x in enumerate(a))
    assert len({x.tobytes() for x in a}) == 6                               # every sample its own crop
    assert not np.array_equal(a[0], np.asarray(aug(image, 1, 0)))            # the seed matters
    crop_only = [np.asarray(KeyedAugment(16, flip=0.0)(image, 0, k)) for k in range(6)]
    flipped = [np.array_equal(x, c[:, ::-1]) for x, c in zip(a, crop_only)]
    assert any(flipped) and not all(flipped)     # the same crops, some of them mirrored


def test_loader_order_is_a_function_of_seed_and_step_with_workers(root):
    straight = pixel(root, num_workers=2)
    ref = [straight.batch(s, 0, 0, 1, 4, "cpu") for s in range(5)]
    resumed = pixel(root, num_workers=2)
    for s in (3, 4, 1, 2):                                 # a resume at 3, then a jump back to 1
        b = resumed.batch(s, 0, 0, 1, 4, "cpu")
        assert torch.equal(b.x, ref[s].x) and torch.equal(b.y, ref[s].y), s
    in_process = pixel(root, num_workers=0).batch(4, 0, 0, 1, 4, "cpu")
    assert torch.equal(in_process.x, ref[4].x)
    # two ranks of 2 read the rows one process of 4 reads, augmentations included
    shards = [pixel(root, num_workers=1).batch(2, 0, r, 2, 2, "cpu") for r in (0, 1)]
    assert torch.equal(torch.cat([b.x for b in shards]), ref[2].x)
    assert not torch.equal(pixel(root).batch(2, 1, 0, 1, 4, "cpu").x, ref[2].x)     # another seed


def test_reference_and_floor_are_disjoint_centre_crops_of_val(root):
    data = pixel(root)
    x, y = data.reference(5)
    fx, _ = data.floor(5)
    assert x.shape == (5, 3, 16, 16) and len(y) == 5
    assert not any(torch.equal(a, b) for a in x for b in fx)
    assert torch.equal(data.reference(5)[0], x)
    with pytest.raises(ValueError, match="too few for a second, disjoint sample"):
        data.floor(12)


def test_loader_speed_settings_are_not_part_of_a_runs_identity():
    from bench.record import config_diff, training_identity

    run = {"data": {"name": "imagenet_pixel", "resolution": 256, "num_workers": 8, "prefetch": 4}, "seed": 0}
    moved = {"data": {"name": "imagenet_pixel", "resolution": 256, "num_workers": 32, "prefetch": 2}, "seed": 0}
    assert config_diff(training_identity(run), training_identity(moved)) == []
    other = {"data": {**run["data"], "resolution": 128}, "seed": 0}
    assert config_diff(training_identity(run), training_identity(other)) == ["data.resolution: 256 -> 128"]
