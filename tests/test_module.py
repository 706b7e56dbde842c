"""SegmentationModule and the run callbacks, on real networks and tensors (no training)."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_modules import SegmentationModule
from lightning_modules.callbacks import FiniteLossGuard, NonFiniteLossError, RngState
from lightning_modules.callbacks.wandb_media import overlay_indices
from lightning_modules.complexity import count_parameters
from lightning_modules.optim import WarmupCosineLR, set_batchnorm_momentum

UNET18 = {"net": "unet", "net_kwargs": {"encoder_name": "resnet18"}}


def _batch(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, size, size, dtype=torch.int64)
    mask[:, 10:30, 5:15] = 1
    return {"image": torch.rand(n, 1, size, size, generator=g), "mask": mask}


def test_model_step_is_cross_entropy_and_logits():
    torch.manual_seed(0)
    module = SegmentationModule(**UNET18).eval()
    batch = _batch()
    loss, step_logits = module.model_step(batch)
    logits = module(batch["image"])
    assert logits.shape == (2, 2, 64, 64)
    assert torch.equal(step_logits, logits)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, batch["mask"]).item(), rel=1e-6)
    assert module.hparams.net == "unet" and module.hparams.loss == "ce"


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    plain = SegmentationModule(**UNET18).eval()
    fast = SegmentationModule(**UNET18, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    conv = fast.net.encoder.layer1[0].conv1.weight  # 64 x 64 x 3 x 3
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    image = _batch()["image"]
    with torch.no_grad():
        torch.testing.assert_close(fast(image), plain(image), rtol=1e-4, atol=1e-4)


def test_image_size_builds_position_embeddings_for_it():
    # transunet_lite's parameters depend on its token grid: 66,820,994 at 64 x 64
    assert count_parameters(SegmentationModule(net="transunet_lite", image_size=64).net) == (
        66_820_994
    )
    explicit = SegmentationModule(net="transunet_lite", net_kwargs={"img_size": 256}, image_size=64)
    assert explicit.net.img_size == 256  # net_kwargs win over the data's size


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD])
def test_injected_optimizer(cls):
    factory = functools.partial(cls, lr=3e-4, weight_decay=1e-4)
    module = SegmentationModule(**UNET18, optimizer=factory)
    module.trainer = pl.Trainer(max_epochs=5, logger=False, enable_checkpointing=False)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (3e-4, 1e-4)
    n_params = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert n_params == count_parameters(module.net)


def test_injected_schedulers_and_their_interval():
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="max")
    module = SegmentationModule(**UNET18, scheduler=plateau, monitor="val/dsc1")
    module.trainer = pl.Trainer(max_epochs=5, logger=False, enable_checkpointing=False)
    config = module.configure_optimizers()["lr_scheduler"]
    assert config["monitor"] == "val/dsc1" and config["interval"] == "epoch"
    assert config["scheduler"].mode == "max"
    module = SegmentationModule(**UNET18, scheduler=WarmupCosineLR)
    module.trainer = pl.Trainer(max_steps=200, logger=False, enable_checkpointing=False)
    config = module.configure_optimizers()["lr_scheduler"]
    assert config["interval"] == "step" and config["scheduler"].total_steps == 200


def test_warmup_cosine_hand_computed():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = WarmupCosineLR(optimizer, warmup_fraction=0.1)  # the run's length comes later
    schedule.set_total_steps(100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(1 / 11) and rates[9] == pytest.approx(10 / 11)  # warm-up
    assert rates[10] == pytest.approx(1.0)  # the peak, then cosine over the other 90 steps
    assert rates[55] == pytest.approx(0.5)  # half way down
    assert rates[99] == pytest.approx(0.5 * (1 + np.cos(np.pi * 89 / 90)))
    with pytest.raises(ValueError, match="warmup_fraction"):
        WarmupCosineLR(optimizer, warmup_fraction=1.5)


def test_old_string_optimizer_keys_are_refused_with_the_new_spelling():
    with pytest.raises(ValueError, match="pass a callable, e.g. functools.partial"):
        SegmentationModule(**UNET18, optimizer="adam")
    with pytest.raises(ValueError, match="WarmupCosineLR"):
        SegmentationModule(**UNET18, scheduler="cosine")


def test_batchnorm_momentum_is_set_everywhere_and_counts_stay():
    default = SegmentationModule(net="unet", net_kwargs={"encoder_name": "efficientnet-b0"})
    momenta = {
        round(m.momentum, 6) for m in default.net.modules() if isinstance(m, torch.nn.BatchNorm2d)
    }
    assert momenta == {0.01, 0.1}  # smp's EfficientNet keeps TensorFlow's 0.01
    quick = SegmentationModule(
        net="unet", net_kwargs={"encoder_name": "efficientnet-b0"}, bn_momentum=0.1
    )
    momenta = {m.momentum for m in quick.net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}
    assert count_parameters(quick.net) == count_parameters(default.net)
    assert set_batchnorm_momentum(quick.net, None) == 0
    with pytest.raises(ValueError, match="bn_momentum"):
        set_batchnorm_momentum(quick.net, 0.0)


def test_finite_loss_guard_stops_with_a_clear_message():
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, max_epochs=1)
    guard = FiniteLossGuard()
    guard.on_train_batch_start(trainer, None, {"id": ["p1-z0003", "p1-z0004"]}, 7)
    guard.on_before_backward(trainer, None, torch.tensor(0.25))  # finite: nothing happens
    with pytest.raises(NonFiniteLossError) as info:
        guard.on_before_backward(trainer, None, torch.tensor(float("nan")))
    message = str(info.value)
    assert "epoch 0, global step 0, batch 7" in message and "p1-z0003, p1-z0004" in message
    assert "--model.optimizer.lr" in message


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002 - the global state RngState saves
    random.seed(1)
    state = RngState().state_dict()
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    torch.save({"callbacks": {"RngState": state}}, tmp_path / "rng.ckpt")
    loaded = torch.load(tmp_path / "rng.ckpt", weights_only=True)["callbacks"]["RngState"]
    torch.rand(5), np.random.rand(5), random.random()  # noqa: NPY002 - move every RNG on
    RngState().load_state_dict(loaded)
    again = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_overlay_images_are_fixed_by_seed_positives_first():
    positive = np.array([0, 1, 0, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    chosen = overlay_indices(positive, 6, seed=3)
    assert chosen == overlay_indices(positive, 6, seed=3)
    assert sorted(chosen[:4]) == [1, 3, 4, 8] and not positive[chosen[4:]].any()
    assert len(set(chosen)) == 6
    assert overlay_indices(positive, 6, seed=4) != chosen
    assert (
        overlay_indices(positive, 20, seed=0) != [] and len(overlay_indices(positive, 20, 0)) == 10
    )


class _Listener(pl.Callback):
    """Keeps every EvaluationResult it is handed, as RunRecord does."""

    def __init__(self):
        self.results = []

    def on_evaluation_result(self, trainer, pl_module, result):
        self.results.append(result)


def test_evaluation_results_reach_listening_callbacks_not_the_module():
    from datamodules.dataset import EvaluationIndex

    n, size = 4, 64
    images = _batch(n, size)
    masks = images["mask"].to(torch.uint8)
    masks[1::2] = 0  # images 1 and 3 have no pneumothorax
    items = [{"image": images["image"][i], "mask": masks[i], "index": i} for i in range(n)]
    batches = torch.utils.data.DataLoader(items, batch_size=2)
    ids = tuple(f"img{i}" for i in range(n))
    index = EvaluationIndex(ids, ("p0", "p0", "p1", "p1"), np.array([1, 0, 1, 0], bool))
    module = SegmentationModule(**UNET18, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    module.set_evaluation_data({"val": index, "test": index})
    listener = _Listener()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[listener],
    )
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=batches)
    trainer.test(module, dataloaders=batches, verbose=False)
    val, test = listener.results
    assert (val.stage, test.stage) == ("val", "test")
    assert val.per_image == [] and set(val.metrics) < set(test.metrics)  # + Hausdorff
    assert "hd95" in test.metrics and "hd95" not in val.metrics
    assert test.metrics["n_images"] == n and test.metrics["n_positive"] == 2
    assert [row["id"] for row in test.per_image] == list(ids)
    assert sorted(row["patient"] for row in test.per_patient) == ["p0", "p1"]
    assert test.diagnosis == module.rule.to_dict()
    # full precision, not the float32 of trainer.callback_metrics
    assert isinstance(test.metrics["dice_kaggle"], float)
    for parked in ("results", "per_image", "per_patient"):
        assert not hasattr(module, parked)
