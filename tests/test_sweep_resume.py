"""A sweep killed mid-way and started again runs only what is missing; a failing cell is
reported and does not stop the others. Real `ptx sweep` processes on a tiny phantom sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

TINY = """
title: "tiny sweep for the resume test"
reference: r18
overrides:
  trainer.max_epochs: 1
  trainer.limit_train_batches: 2
  trainer.limit_val_batches: 1
  trainer.num_sanity_val_steps: 0
  data.init_args.phantom: {patients: 8, size: 96, slices: 12}
columns: [dice, {key: params, label: Param, source: run}]
cells:
  - {id: r18, exp: ct/unet, overrides: {model.net_kwargs.encoder_name: resnet18}}
  - {id: broken, exp: ct/unet, overrides: {model.net_kwargs.encoder_name: no-such-encoder}}
  - {id: fpn18, exp: ct/fpn, overrides: {model.net_kwargs.encoder_name: resnet18}}
  - {id: link18, exp: ct/linknet, overrides: {model.net_kwargs.encoder_name: resnet18}}
"""


def _sweep(definition, tmp_path, **popen):
    command = [sys.executable, "-m", "experiments.cli", "sweep", str(definition)]
    command += ["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "results")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, text=True, start_new_session=True, **popen)


def _status(run_dir):
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def test_killed_sweep_resumes_with_only_the_missing_cells(tmp_path):
    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY)
    group = tmp_path / "runs" / "tiny"
    first = _sweep(definition, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    while _status(group / "r18-s0") != "finished" and time.monotonic() < deadline:
        time.sleep(1)
    assert _status(group / "r18-s0") == "finished", "the first cell never finished"
    os.killpg(first.pid, signal.SIGKILL)  # the whole sweep, its running cell included
    first.wait()
    finished_at = (group / "r18-s0" / "metrics.json").stat().st_mtime
    assert _status(group / "link18-s0") is None  # never reached

    second = _sweep(definition, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 1, output  # the broken cell failed
    assert "4 runs (1 finished" in output
    assert "starting r18-s0" not in output and "resuming r18-s0" not in output
    assert (group / "r18-s0" / "metrics.json").stat().st_mtime == finished_at
    assert "broken-s0 FAILED" in output and "no-such-encoder" in output
    for name in ("fpn18-s0", "link18-s0"):
        assert _status(group / name) == "finished", name
    assert "1 failed" in output
    # the report covers the three finished cells and marks the failed one
    table = (tmp_path / "results" / "tiny" / "table.md").read_text()
    assert "failed" in table
    sweep_state = json.loads((group / "sweep.json").read_text())
    assert sweep_state["runs"]["broken-s0"]["status"] == "failed"

    third = _sweep(definition, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = third.communicate(timeout=600)
    assert "3 finished" in output and "starting fpn18-s0" not in output
