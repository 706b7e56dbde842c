"""Lightning's own DDP on CPU (gloo): two processes give the test metrics of one.

With the split 65/16/19 the X-ray phantom's quick test set has an odd number of images (29),
so DistributedSampler pads one rank with a repeated image: the metrics must count it once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiments.train import fit_cli

XRAY = ["--exp", "xray/vanilla_unet", "--profile", "quick"]
XRAY += ["--data.init_args.split_fractions", "[65, 16, 19]"]  # an odd test set


def _ptx(*argv: str) -> None:
    # a fresh interpreter: Lightning's DDP launcher re-runs this exact command once per rank
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_give_the_metrics_of_one(tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    assert fit_cli([*XRAY, *runs, "--name", "base", *short]) == 0
    ckpt = str(tmp_path / "xray" / "base" / "checkpoints" / "best.ckpt")
    common = [*XRAY, *runs, "--ckpt_path", ckpt, "--trainer.accelerator", "cpu"]
    _ptx("test", *common, "--name", "one", "--trainer.devices", "1")
    _ptx("test", *common, "--name", "two", "--trainer.devices", "2", "--trainer.strategy", "ddp")

    one = json.loads((tmp_path / "xray" / "one" / "metrics.json").read_text())["test"]
    two = json.loads((tmp_path / "xray" / "two" / "metrics.json").read_text())["test"]
    assert one["n_images"] % 2 == 1  # padding happened
    assert two["n_images"] == one["n_images"]
    assert two.keys() == one.keys()
    for key, value in one.items():  # null (undefined) only matches null
        assert two[key] == value or (
            None not in (two[key], value) and two[key] == pytest.approx(value, rel=1e-6)
        ), key
    rows_one = (tmp_path / "xray" / "one" / "per_image.csv").read_text().splitlines()
    rows_two = (tmp_path / "xray" / "two" / "per_image.csv").read_text().splitlines()
    assert rows_one == rows_two
