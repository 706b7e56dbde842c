"""Every experiment config x profile builds its model, datamodule and trainer with the papers'
settings; the wrapper's options, profiles, run names and W&B mode resolve as documented."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from experiments.profiles import PROFILES, choose_profile, experiment_layers, list_experiments
from experiments.run_dir import run_name
from experiments.train import lightning_args, run
from experiments.wandb_setup import has_api_key, wandb_mode
from lightning_modules.complexity import count_parameters
from lightning_modules.optim import WarmupCosineLR

# Parameters of the network each config builds (docs/models.md; TransUNets at 256 x 256,
# their position embeddings shrink with the quick profile's 64 x 64).
PARAMS = {
    "ct/unet": 24_430_242,
    "ct/unetplusplus": 26_072_482,
    "ct/fpn": 23_149_250,
    "ct/linknet": 21_765_698,
    "ct/deeplabv3plus": 22_431_442,
    "ct/transunet": {"paper": 105_315_874, "quick": 105_131_554},
    "ct/transunet_lite": {"paper": 67_066_754, "quick": 66_820_994},
    "ct/efa_net": 28_428_362,
    "ct/fa": 22_466_618,
    "ct/unet_efficientnet": 30_162_610,
    "xray/ms_scse_fc_densenet": 5_989_096,
    "xray/fc_densenet": 5_415_278,
    "xray/vanilla_unet": 7_764_098,
    "xray/ms_scse_unet": 8_204_011,
    "xray/segnet": 29_444_162,
    "xray/dense_aspp": 35_365_762,
    "xray/deeplabv3plus_resnet101": 59_339_426,
}
# the slowest builds on 2 CPU cores run once (quick) in the fast set, both profiles in `slow`
HEAVY = {"ct/transunet", "ct/transunet_lite", "xray/deeplabv3plus_resnet101", "xray/dense_aspp"}


def test_every_experiment_config_is_covered():
    assert sorted(PARAMS) == list_experiments()


def _cases():
    for experiment in list_experiments():
        for profile in PROFILES:
            slow = experiment in HEAVY and profile == "paper"
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(experiment, profile, marks=marks, id=f"{experiment}-{profile}")


@pytest.mark.parametrize("experiment,profile", _cases())
def test_config_instantiates_with_paper_settings(experiment, profile, tmp_path):
    cli = run(
        "fit", ["--exp", experiment, "--profile", profile, "--runs-dir", str(tmp_path)], False
    )
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    modality = experiment.split("/")[0]
    expected = PARAMS[experiment]
    expected = expected[profile] if isinstance(expected, dict) else expected
    assert count_parameters(model.net) == expected
    assert type(data).__name__ == {"ct": "CTDataModule", "xray": "XRayDataModule"}[modality]
    assert data.image_size == {"paper": 256, "quick": 64}[profile]
    assert model.hparams.in_channels == data.in_channels == {"ct": 1, "xray": 3}[modality]
    optimizer = model.optimizer_factory(model.parameters())
    assert type(optimizer) is torch.optim.Adam
    scheduler = model.scheduler_factory and model.scheduler_factory(optimizer)
    group = optimizer.param_groups[0]
    # only X-ray quick has a schedule (warm-up + cosine over the run's steps); the papers' and
    # the CT quick profile's rates are constant
    assert (scheduler is not None) == ((modality, profile) == ("xray", "quick"))
    if scheduler is not None:
        assert type(scheduler) is WarmupCosineLR and scheduler.warmup_fraction == 0.05
        group["lr"] = scheduler.base_lrs[0]  # the peak; the warm-up starts below it
    checkpoint = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    assert checkpoint.dirpath == str(cli.run_dir / "checkpoints")
    assert cli.run_dir.parent == tmp_path / modality
    # quick raises the learning rate (few steps; see the _quick.yaml files), paper keeps it
    if modality == "ct":  # EFA-Net paper: CE, Adam 1e-3, 80 epochs, batch 80
        lr = {"paper": 1e-3, "quick": 3e-3}[profile]
        assert (model.hparams.loss, group["lr"], group["weight_decay"]) == ("ce", lr, 0)
        assert checkpoint.monitor == "val/dice"  # every profile: Dice over PTX slices
        if profile == "paper":
            assert (trainer.max_epochs, data.batch_size) == (80, 80)
    else:  # X-ray paper: SW-CEL, Adam 1e-4 + wd 1e-4, <= 200 epochs, ES on DSC1 (20), flips
        lr = {"paper": 1e-4, "quick": 1.5e-3}[profile]
        assert (model.hparams.loss, group["lr"], group["weight_decay"]) == ("swce", lr, 1e-4)
        assert group["betas"] == (0.9, 0.999)
        assert checkpoint.monitor == "val/dsc1"  # every profile: DSC1 over the PTX group
        stopper = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
        assert (stopper.monitor, stopper.patience, stopper.mode) == ("val/dsc1", 20, "max")
        assert data.hflip
        if profile == "paper":
            assert trainer.max_epochs == 200
    if profile == "quick":
        assert data.data_dir is None and data.num_workers == 0 and trainer.max_epochs <= 10


def test_command_line_overrides_merge_into_the_experiment(tmp_path):
    cli = run(
        "fit",
        ["--exp", "ct/unet", "--profile", "quick", "--runs-dir", str(tmp_path), "--seed", "3"]
        + ["--model.net_kwargs.encoder_name", "resnet18", "--data.batch_size", "4"],
        False,
    )
    assert count_parameters(cli.model.net) == 14_322_082  # smp U-Net / ResNet-18, 1 -> 2
    assert cli.datamodule.batch_size == 4 and cli.datamodule.image_size == 64
    assert cli.run_dir == tmp_path / "ct" / "unet-resnet18-ce-s3"


def test_wrapper_translates_its_options_and_passes_the_rest(tmp_path):
    args = lightning_args(
        "fit",
        ["--exp", "xray/fc_densenet", "--profile", "auto", "--data", str(tmp_path), "--seed", "2"]
        + ["--name", "mine", "--trainer.max_epochs", "7"],
        gpu=False,
    )
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    assert [c.rsplit("/", 2)[-2:] for c in configs] == [
        ["xray", "_defaults.yaml"],
        ["xray", "fc_densenet.yaml"],
        ["xray", "_paper.yaml"],  # data given: auto -> paper
    ]
    joined = " ".join(args)
    assert f"--data.init_args.data_dir {tmp_path}" in joined
    assert "--seed_everything 2" in joined and "--run.name mine" in joined
    assert args[-2:] == ["--trainer.max_epochs", "7"]


def test_profiles_and_experiments():
    assert choose_profile("auto", data_given=False, gpu=False)[0] == "quick"
    assert "no --data given and no GPU" in choose_profile("auto", False, False)[1]
    assert choose_profile("auto", data_given=False, gpu=True)[0] == "paper"
    assert choose_profile("quick", data_given=True, gpu=True) == ("quick", None)
    assert [p.name for p in experiment_layers("ct/efa_net", "quick")] == [
        "_defaults.yaml",
        "efa_net.yaml",
        "_quick.yaml",
    ]
    with pytest.raises(ValueError, match="ct/efa_net"):  # the error lists the valid names
        experiment_layers("ct/efa", "paper")
    with pytest.raises(ValueError, match="unknown profile"):
        experiment_layers("ct/efa_net", "fast")
    with pytest.raises(ValueError, match="give --exp"):
        lightning_args("fit", ["--trainer.max_epochs", "1"], gpu=False)


def test_run_names():
    assert run_name("unet", {"encoder_name": "resnet34"}, "ce", 0) == "unet-resnet34-ce-s0"
    assert run_name("ms_scse_fc_densenet", {"growth_rate": 12}, "swce", 2) == (
        "ms_scse_fc_densenet-k12-swce-s2"
    )
    assert run_name("vanilla_unet", None, "ce+dice", 1) == "vanilla_unet-ce+dice-s1"
    assert run_name("unet", {"encoder_name": "tu-regnetx_006"}, "ce", 0) == (
        "unet-tu-regnetx_006-ce-s0"
    )


def test_wandb_mode_without_and_with_a_key(tmp_path):
    home = {"HOME": str(tmp_path)}  # an empty home: no ~/.netrc
    assert wandb_mode(home)[0] == "offline"
    assert wandb_mode({**home, "WANDB_MODE": "disabled"})[0] == "disabled"
    assert wandb_mode({**home, "WANDB_API_KEY": "x" * 40})[0] == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    assert has_api_key({**home, "NETRC": str(netrc)})
    assert not has_api_key({**home, "NETRC": str(netrc), "WANDB_BASE_URL": "https://wb.lan"})


def test_network_keywords_from_the_command_line_get_their_types(tmp_path):
    """Sweeps pass `--model.net_kwargs.growth_rate 4`: the network must get the int 4."""
    cli = run(
        "fit",
        ["--exp", "xray/ms_scse_fc_densenet", "--profile", "quick", "--runs-dir", str(tmp_path)]
        + ["--model.net_kwargs.growth_rate", "4"],
        False,
    )
    assert cli.model.hparams.net_kwargs == {"growth_rate": 4}
    assert cli.run_dir.name == "ms_scse_fc_densenet-k4-swce-s0"
    k12 = run("fit", ["--exp", "xray/ms_scse_fc_densenet", "--runs-dir", str(tmp_path)], False)
    assert count_parameters(cli.model.net) < count_parameters(k12.model.net) == 5_989_096


def test_phantom_keywords_from_the_command_line_get_their_types(tmp_path):
    base = ["--exp", "xray/ms_scse_fc_densenet", "--profile", "quick", "--runs-dir", str(tmp_path)]
    more = ["--model.loss_kwargs.weight_power", "0.75"]  # the same for every free-form dict
    cli = run("fit", [*base, "--data.init_args.phantom.min_depth", "2e-1", *more], False)
    assert cli.datamodule.phantom["min_depth"] == 0.2 and cli.datamodule.phantom["size"] == 256
    assert cli.model.criterion.weight_power == 0.75
    assert cli.datamodule.data_root.name.startswith("xray-v2-seed0-")
    # the phantom's version is part of the run's config (and its hash), the data folder not
    assert cli.resolved["data"]["init_args"]["phantom"]["version"] == 2
    real = run("fit", [*base, "--data", str(tmp_path)], False)
    assert real.datamodule.phantom.get("version") is None


def test_channels_last_where_the_profile_measured_it_else_on_a_gpu_only(tmp_path):
    def channels_last(experiment, profile, *more):
        args = ["--exp", experiment, "--profile", profile, "--runs-dir", str(tmp_path), *more]
        return run("fit", args, False).model.hparams.channels_last

    gpu = torch.cuda.is_available()
    assert channels_last("xray/ms_scse_fc_densenet", "quick") is True  # 1.1-1.5x on CPU too
    assert channels_last("ct/unet", "quick") is gpu  # the CT encoders: slower in NHWC on CPU
    assert channels_last("ct/unet", "paper") is gpu
    assert channels_last("ct/unet", "quick", "--model.channels_last", "true") is True
    assert channels_last("ct/unet", "paper", "--trainer.accelerator", "cpu") is False


def test_old_optimizer_keys_are_refused_with_the_new_spelling(tmp_path):
    base = ["--exp", "ct/unet", "--profile", "quick", "--runs-dir", str(tmp_path)]
    with pytest.raises(ValueError, match=r"--model.lr is gone: write --model.optimizer.lr"):
        lightning_args("fit", [*base, "--model.lr", "3e-4"], gpu=False)
    with pytest.raises(ValueError, match="give a class"):
        lightning_args("fit", [*base, "--model.optimizer=adamw"], gpu=False)
    cli = run(
        "fit",
        [*base, "--model.optimizer", "torch.optim.AdamW", "--model.optimizer.lr", "2e-4"]
        + ["--model.scheduler", "lightning_modules.optim.WarmupCosineLR"],
        False,
    )
    optimizer = cli.model.optimizer_factory(cli.model.parameters())
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["lr"] == 2e-4
    assert type(cli.model.scheduler_factory(optimizer)).__name__ == "WarmupCosineLR"
