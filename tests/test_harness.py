"""The shared harness: schedule, EMA, seeding, device selection."""

import pytest
import torch
from torch import nn

from methods.base import StepRandom
from methods.noise import mix_seed
from methods.harness.dist import select_device
from methods.harness.ema import EMASet
from methods.harness.optim import lr_at
from methods.harness.trainer import TrainConfig
from tests.conftest import assert_stopped_run_resumes_exactly


def test_warmup_then_constant_or_cosine():
    assert lr_at(0, 1.0, 100, warmup_steps=10) == pytest.approx(1e-3)
    assert lr_at(5, 1.0, 100, warmup_steps=10) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert lr_at(10, 1.0, 100, warmup_steps=10) == 1.0 == lr_at(99, 1.0, 100, warmup_steps=10)
    assert lr_at(10, 1.0, 110, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 110, 10, "cosine", 0.1) == pytest.approx(0.55)
    assert lr_at(110, 1.0, 110, 10, "cosine", 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="train.schedule must be one of"):
        lr_at(0, 1.0, 10, schedule="step")


def test_ema_matches_its_closed_form_for_each_decay():
    net = nn.Linear(1, 1, bias=False)
    ema = EMASet(net, [0.5, 0.9])
    values = [1.0, 3.0, -2.0]
    for v in values:
        net.weight.data.fill_(v)
        ema.update(net)
    for d in (0.5, 0.9):
        expected = values[0]                   # the first update copies the weights
        for v in values[1:]:
            expected = d * expected + (1 - d) * v
        assert ema.model(f"ema_{d:g}").weight.item() == pytest.approx(expected)
    with pytest.raises(KeyError, match="this run keeps: raw, ema_0.5, ema_0.9"):
        ema.model("ema_0.99")
    with pytest.raises(ValueError, match=r"decays must lie in \(0, 1\)"):
        EMASet(net, [1.5])


def test_train_config_rejects_bad_values_with_the_key_name():
    with pytest.raises(ValueError, match="train.batch_size=10 must be >= 1 and divisible by the 4"):
        TrainConfig(batch_size=10).validate(world=4)
    with pytest.raises(ValueError, match="train.precision must be auto, fp32 or bf16"):
        TrainConfig(precision="fp16").validate()


def test_step_randomness_depends_on_seed_and_step_only():
    a = StepRandom(1, 7, 0, 1, 4, "cpu").randn(3)
    assert torch.equal(a, StepRandom(1, 7, 0, 1, 4, "cpu").randn(3))
    assert not torch.equal(a, StepRandom(1, 8, 0, 1, 4, "cpu").randn(3))
    assert not torch.equal(a, StepRandom(2, 7, 0, 1, 4, "cpu").randn(3))
    assert mix_seed(1, 2) != mix_seed(2, 1) and 0 <= mix_seed(2**70, -1) < 2**63


def test_device_selection():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA device is visible"):
            select_device("cuda")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        select_device("mps0")


def test_a_hook_that_asks_to_stop_checkpoints_and_the_run_resumes_exactly(tmp_path):
    from bench.data import build_data
    from methods.backbones import build_backbone
    from methods.drifting.method import Drifting
    from methods.harness.dist import DistEnv
    from methods.harness.trainer import Trainer

    def fit(run_dir, hooks=()):
        run_dir.mkdir(exist_ok=True)
        torch.manual_seed(0)
        data, method = build_data({"name": "ring8"}), Drifting(Drifting.Config())
        net = method.build(build_backbone({"name": "mlp", "hidden": 16, "depth": 2}, method.backbone_io(data.spec)),
                           data.spec)
        trainer = Trainer(method, net, data, TrainConfig(steps=12, batch_size=64, progress=False,
                                                         ckpt_every_steps=100), run_dir, 0, DistEnv(),
                          log=lambda s: None, hooks=hooks)
        return trainer, trainer.fit()

    assert_stopped_run_resumes_exactly(fit, tmp_path, stop_at=5)
