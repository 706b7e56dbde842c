"""W&B as its users expect: the full resolved config in the run, W&B's environment variables
respected, checkpoints as artifacts on request, sweep mirrors that never tune on the test
set, and `--print_config` showing what a run will really use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from wandb_records import run_summary

from ablations.wandb_mirror import MIRROR_DIR
from experiments.cli import main as ptx
from experiments.run_config import config_hash, differences, flatten, hashed_items
from experiments.train import fit_cli
from experiments.wandb_setup import WandbSettings, logger_arguments

TINY = [
    "--exp", "ct/unet", "--profile", "quick",
    "--model.net_kwargs.encoder_name", "resnet18",
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
    "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    "--data.batch_size", "4",
    "--data.phantom", "{patients: 8, size: 96, slices: 12}",
]  # fmt: skip
NO_ENV = {}


def test_settings_win_over_the_environment_which_wins_over_defaults(tmp_path):
    tags = ["model:unet"]
    defaults = logger_arguments(WandbSettings(), tmp_path, "ct", tags, NO_ENV)
    assert defaults["project"] == "ptx-ct" and defaults["entity"] is None
    assert defaults["save_dir"] == str(tmp_path) and defaults["mode"] == "offline"
    assert defaults["log_model"] is False  # auto: nothing uploaded offline
    env = {
        "WANDB_PROJECT": "lung",
        "WANDB_ENTITY": "team",
        "WANDB_DIR": "/scratch/wandb",
        "WANDB_MODE": "online",
        "WANDB_TAGS": "site-a, pilot",
    }
    from_env = logger_arguments(WandbSettings(), tmp_path, "ct", tags, env)
    assert (from_env["project"], from_env["entity"]) == ("lung", "team")
    assert (from_env["save_dir"], from_env["mode"]) == ("/scratch/wandb", "online")
    assert from_env["tags"] == ["model:unet", "site-a", "pilot"]
    assert from_env["log_model"] is True  # auto online: the best checkpoint at the end
    given = WandbSettings(project="p2", entity="me", dir="/d", mode="offline", tags=["x"])
    given.log_model = "all"
    overridden = logger_arguments(given, tmp_path, "ct", tags, env)
    assert (overridden["project"], overridden["entity"], overridden["save_dir"]) == (
        "p2",
        "me",
        "/d",
    )
    assert overridden["mode"] == "offline" and overridden["log_model"] == "all"
    assert overridden["tags"] == ["model:unet", "site-a", "pilot", "x"]
    with pytest.raises(ValueError, match="--wandb.log_model 'sometimes'"):
        logger_arguments(WandbSettings(log_model="sometimes"), tmp_path, "ct", tags, NO_ENV)


def test_no_wandb_sweep_mirror_optimises_a_test_metric():
    mirrors = sorted(MIRROR_DIR.glob("*.yaml"))
    assert len(mirrors) == 6
    for path in mirrors:
        metric = yaml.safe_load(path.read_text())["metric"]["name"]
        assert metric.startswith("val/"), f"{path.name} tunes on {metric}"


def test_config_hash_ignores_where_a_run_lives_not_how_it_trains():
    base = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 6, "default_root_dir": "/runs/a"},
        "data": {"init_args": {"batch_size": 8, "cache_dir": "/c1", "split_fractions": (1, 2)}},
        "run": {"name": "a", "experiment": "ct/unet", "runs_dir": "/runs"},
        "wandb": {"project": "x"},
    }
    moved = json.loads(json.dumps(base))
    moved["trainer"]["default_root_dir"], moved["run"]["name"] = "/elsewhere/b", "b"
    moved["data"]["init_args"]["cache_dir"], moved["wandb"]["project"] = "/c2", "y"
    assert config_hash(moved) == config_hash(base)
    assert "run.experiment" in hashed_items(base) and "run.name" not in hashed_items(base)
    longer = json.loads(json.dumps(base))
    longer["trainer"]["max_epochs"] = 8
    assert config_hash(longer) != config_hash(base)
    assert differences(base, longer) == ["trainer.max_epochs 6 (this sweep: 8)"]
    assert flatten({"a": {"b": 1, "c": {}}}) == {"a.b": 1, "a.c": {}}


def test_print_config_shows_the_values_the_run_will_use(capsys):
    with pytest.raises(SystemExit) as stop:
        ptx(["fit", "--exp", "ct/unet", "--profile", "quick", "--print_config"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    config = yaml.safe_load(text)
    assert config["model"]["image_size"] == config["data"]["init_args"]["image_size"] == 64
    assert config["checkpoint"]["monitor"] == "val/dice"
    assert config["run"]["name"] == "unet-resnet34-ce-s0"
    logger = config["trainer"]["logger"]
    assert logger["class_path"].endswith("ResilientWandbLogger")
    assert logger["init_args"]["project"] == config["wandb"]["project"] == "ptx-ct"
    assert logger["init_args"]["mode"] == "disabled"  # the tests' WANDB_MODE


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_offline_run_config_holds_data_trainer_and_provenance(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "ptx-env-project")
    monkeypatch.setenv("WANDB_TAGS", "from-env")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-files"))
    assert fit_cli([*TINY, "--runs-dir", str(tmp_path / "runs"), "--run.sweep", "s"]) == 0
    run_dir = tmp_path / "runs" / "ct" / "unet-resnet18-ce-s0"
    record = json.loads((run_dir / "metrics.json").read_text())
    assert not list(run_dir.glob("**/offline-run-*")), "WANDB_DIR was not used"
    summary = run_summary(tmp_path / "wandb-files")
    assert summary["project"] == "ptx-env-project" and summary["group"] == "ct"
    assert "from-env" in summary["tags"] and "model:unet" in summary["tags"]
    config = summary["config"]
    (files,) = (tmp_path / "wandb-files").glob("wandb/offline-run-*/files/config.yaml")
    shown = yaml.safe_load(files.read_text())  # W&B's layout: key -> {value: ...}
    assert shown["data"]["value"]["init_args"]["batch_size"] == 4
    assert shown["trainer"]["value"]["max_epochs"] == 1
    assert config["data"]["init_args"]["batch_size"] == 4
    assert config["trainer"]["max_epochs"] == 1
    assert config["model"]["net_kwargs"]["encoder_name"] == "resnet18"
    assert config["run"]["sweep"] == "s" and config["seed_everything"] == 0
    provenance = config["ptx"]
    assert provenance["config_hash"] == record["config_hash"]
    assert len(provenance["data_fingerprint"]) == 16 and provenance["version"]
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config_hash(stored) == record["config_hash"]  # the record's own config.yaml
    patients = json.loads((run_dir / "split.json").read_text())
    keys = {p for s in ("train", "val", "test") for p in patients[s]}
    assert keys and not any(k in json.dumps(config) for k in keys)  # no patient key


def test_report_project_follows_wandb_project(tmp_path, monkeypatch):
    import ablations.report as report

    seen = {}

    class FakeRun:
        def log(self, logged):
            seen["logged"] = sorted(logged)

        def finish(self):
            pass

    def init(**kwargs):
        seen.update(kwargs)
        return FakeRun()

    monkeypatch.setattr("wandb.init", init)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "lung")
    table = type("T", (), {"sweep": None, "columns": ["cell"], "rows": [{"cell": "a"}]})()
    table.sweep = type("S", (), {"modality": "ct", "group": "g", "name": "n"})()
    table.seeds, table.profiles = [0], ["quick"]
    assert report.log_to_wandb(table, Path(tmp_path), {}) is None
    assert seen["project"] == "lung" and seen["job_type"] == "report"
    assert seen["logged"] == ["table"]
