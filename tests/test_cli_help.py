"""The command line's self-description: ``ptx fit --help`` lists every LightningCLI option with
defaults, ``ptx --version``, ``make help``, defaults in every argparse help, one cache folder."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from datamodules.cache import default_cache_dir
from datamodules.layouts import privacy
from experiments.cli import main as ptx

ROOT = Path(__file__).resolve().parents[1]


def test_fit_help_lists_lightning_options_with_the_experiments_defaults(capsys):
    assert ptx(["fit", "--exp", "ct/unet", "--profile", "quick", "--help"]) == 0
    out = capsys.readouterr().out
    wrapper, _, lightning = out.partition("LightningCLI options (every --KEY VALUE below")
    assert "--exp EXP" in wrapper and "(default: auto)" in wrapper
    for option in ("--trainer.max_epochs", "--model.net", "--model.optimizer", "--data.batch_size"):
        assert option in lightning, option
    assert "--checkpoint.monitor" in lightning and "--run.group" in lightning
    # the quick profile's values, not the classes' own (trainer.max_epochs: None)
    max_epochs = lightning.split("--trainer.max_epochs MAX_EPOCHS\n")[1].split("\n  --")[0]
    assert "default: 8)" in " ".join(max_epochs.split())
    assert "--data datamodules.ct.CTDataModule (the experiment's values)" in lightning


def test_help_without_an_experiment_shows_both_data_modules(capsys):
    assert ptx(["test", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--ckpt_path" in out and "--trainer.max_epochs" in out and "--model.net" in out
    assert "datamodules.ct.CTDataModule" in out and "datamodules.xray.XRayDataModule" in out
    assert "--data.batch_size BATCH_SIZE" in out


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_distributions(flag, capsys):
    assert ptx([flag]) == 0
    assert capsys.readouterr().out.strip() == f"ptx-seg {version('ptx-seg')}"


def test_usage_names_the_version_and_the_help(capsys):
    assert ptx([]) == 0
    out = capsys.readouterr().out
    assert "--version" in out and version("ptx-seg") in out and "COMMAND --help" in out


@pytest.mark.parametrize(
    "argv",
    [["sweep", "--help"], ["report", "--help"], ["phantom", "ct", "--help"], ["predict", "-h"]],
)
def test_argparse_help_shows_defaults(argv, capsys):
    with pytest.raises(SystemExit) as done:
        ptx(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "(default: " in out
    assert "(default: results) (default" not in out  # no default said twice


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_lists_every_target_and_installs_nothing():
    result = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    targets = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    sweeps = {"ablation-encoders", "ablation-efa", "compare-ct", "sweep-growth-rate"}
    assert sweeps | {"ablation-loss", "compare-xray", "train", "test", "help", "bench"} <= targets
    assert "EFA-Net Tables 2-3" in result.stdout  # each sweep with its table
    assert "pip" not in result.stdout + result.stderr
    default = subprocess.run(["make", "-s", "-n"], cwd=ROOT, capture_output=True, text=True)
    assert "awk" in default.stdout and "pip" not in default.stdout  # help is the default goal


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_passes_args_to_every_sweep_cells_fit():
    result = subprocess.run(
        [
            "make",
            "-s",
            "-n",
            "-o",
            ".venv/.installed",
            "ablation-encoders",
            "FOLDS=5",
            "SWEEP_ARGS=--cells unet-resnet34 --dry-run",
            "ARGS=--trainer.devices 2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    line = result.stdout.strip().splitlines()[-1].split()
    assert line[1:3] == ["sweep", "ablation-encoders"]
    assert line[line.index("--folds") + 1] == "5" and "--dry-run" in line
    assert line[line.index("--") :] == ["--", "--trainer.devices", "2"]


def test_one_cache_folder_whatever_the_entry_point(monkeypatch, tmp_path):
    monkeypatch.delenv("PTX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ptx"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG spec says
    assert default_cache_dir() == Path.home() / ".cache" / "ptx"
    monkeypatch.setenv("PTX_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"^\s*(export\s+)?PTX_CACHE_DIR\s*[:?]?=", makefile, re.MULTILINE)


def test_a_secret_left_in_the_checkout_by_make_is_named(monkeypatch, tmp_path, caplog):
    old = tmp_path / "checkout" / ".cache" / "ptx" / "id_secret"
    old.parent.mkdir(parents=True)
    old.write_text("0" * 64 + "\n")
    monkeypatch.chdir(old.parents[2])
    monkeypatch.delenv("PTX_CACHE_DIR", raising=False)
    monkeypatch.delenv("PTX_ID_SALT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    privacy._from_file.cache_clear()
    caplog.set_level(logging.WARNING, logger="ptx.data.privacy")
    try:
        privacy.id_secret()
    finally:
        privacy._from_file.cache_clear()
    new = tmp_path / "xdg" / "ptx" / "id_secret"
    assert new.is_file()  # the documented default; the old one is not read silently
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(old) in warned and str(new.parent) in warned and "PTX_CACHE_DIR=" in warned


def test_the_config_file_actions_fit_help_skips_still_exist():
    """fit_help tells config-file options by class name (no private import): a jsonargparse
    that renames them would quietly show wrong defaults; this test says so first."""
    import jsonargparse
    from jsonargparse import _actions

    from experiments import fit_help

    names = {
        type_.__name__ for type_ in (jsonargparse.ActionConfigFile, _actions._ActionConfigLoad)
    }
    assert names == fit_help.CONFIG_FILE_ACTIONS
