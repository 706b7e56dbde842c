"""The six sweep definitions: the papers' grids, overrides ptx accepts, published numbers."""

from __future__ import annotations

import inspect

import pytest
import yaml

from ablations.sweeps import SweepError, list_sweeps, load_sweep
from experiments.profiles import experiment_layers, list_experiments
from lightning_modules.module import SegmentationModule
from lightning_modules.nets import model_entry

EXPECTED_CELLS = {
    "ablation-encoders": 10,  # EFA Tables 2-3
    "ablation-efa": 4,  # EFA Table 4
    "compare-ct": 7,  # EFA Tables 5-6
    "sweep-growth-rate": 8,  # X-ray Table 4, k = 2..16
    "ablation-loss": 18,  # X-ray Table 5, 3 losses x 6 networks
    "compare-xray": 7,  # X-ray Tables 2-3
}


def test_every_paper_table_has_its_sweep():
    assert list_sweeps() == sorted(EXPECTED_CELLS)
    for name, count in EXPECTED_CELLS.items():
        assert len(load_sweep(name).cells) == count, name


def _net_of(exp: str) -> str:
    net = None
    for layer in experiment_layers(exp, "paper"):
        net = ((yaml.safe_load(layer.read_text()) or {}).get("model") or {}).get("net", net)
    return net


@pytest.mark.parametrize("name", sorted(EXPECTED_CELLS))
def test_cells_name_real_experiments_and_keywords(name):
    sweep = load_sweep(name)
    module_keywords = set(inspect.signature(SegmentationModule.__init__).parameters)
    for cell in sweep.cells:
        assert cell.exp in list_experiments(), cell
        builder = inspect.signature(model_entry(_net_of(cell.exp)).builder).parameters
        for key in sweep.overrides_for(cell, "quick"):
            section, _, rest = key.partition(".")
            assert section in {"model", "data", "trainer"}, key
            if key.startswith("model.net_kwargs."):
                assert key.removeprefix("model.net_kwargs.") in builder, (cell.id, key)
            elif section == "model":
                assert rest in module_keywords, (cell.id, key)
        # paper numbers only for columns the table has
        assert set(cell.paper) <= {c.key for c in sweep.columns}, cell.id


def test_encoder_ablation_reads_the_ten_encoders_and_their_paper_numbers():
    sweep = load_sweep("ablation-encoders")
    encoders = [c.overrides["model.net_kwargs.encoder_name"] for c in sweep.cells]
    assert encoders == [
        "resnet34",
        "se_resnext50_32x4d",
        "tu-res2net50_26w_4s",
        "tu-gernet_m",
        "resnext101_32x4d",
        "tu-resnest26d",
        "se_resnet50",
        "tu-regnetx_006",
        "densenet169",
        "efficientnet-b5",
    ]
    first, last = sweep.cells[0], sweep.cells[-1]
    assert first.id == sweep.reference == "unet-resnet34"
    assert first.paper == {
        "acc": 99.77,
        "iou": 73.66,
        "dice": 83.46,
        "params": 24.43,
        "gmacs": 7.76,
    }
    assert last.paper["dice"] == 86.88 and last.paper["params"] == 3.04
    assert isinstance(last.paper["dice"], float)  # a lone "{field}" keeps the number's type


def test_growth_rate_and_loss_grids():
    growth = load_sweep("sweep-growth-rate")
    rates = [c.overrides["model.net_kwargs.growth_rate"] for c in growth.cells]
    assert rates == [2, 4, 6, 8, 10, 12, 14, 16]
    assert growth.cell(growth.reference).paper["dice"] == 0.838
    loss = load_sweep("ablation-loss")
    assert {c.overrides["model.loss"] for c in loss.cells} == {"ce", "wce", "swce"}
    # each loss is tested against SW-CEL of its own network
    cell = loss.cell("segnet-ce")
    assert loss.reference_of(cell).id == "segnet-swce"
    assert loss.cell("fc_densenet-swce").paper == {"dice": 0.82, "hd": [14.81, 2.02]}  # max(mean)


def test_compare_xray_prints_the_papers_parameter_counts_and_diagnosis():
    sweep = load_sweep("compare-xray")
    ours = sweep.cell("ms_scse_fc_densenet")
    assert ours.paper["params"] == 5_989_096 and ours.paper["diag_acc"] == 93.45
    assert [c.key for c in sweep.columns if c.key.startswith("diag_")] == [
        "diag_acc",
        "diag_sen",
        "diag_spec",
        "diag_ppv",
        "diag_npv",
        "diag_f1",
    ]


def _write(tmp_path, text: str):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_malformed_definitions_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(SweepError, match="unknown sweep 'nope'.*ablation-encoders"):
        load_sweep("nope")
    base = "title: t\ncolumns: [dice]\n"
    cells = "cells:\n  - {id: a, exp: ct/unet}\n  - {id: b, exp: ct/fpn}\n"
    with pytest.raises(SweepError, match="mine.yaml: missing field 'reference'"):
        load_sweep(str(_write(tmp_path, base + cells)))
    with pytest.raises(SweepError, match="no cell 'zz'"):
        load_sweep(str(_write(tmp_path, base + "reference: zz\n" + cells)))
    twice = "cells:\n  - {id: a, exp: ct/unet}\n  - {id: a, exp: ct/fpn}\n"
    with pytest.raises(SweepError, match=r"duplicate cell ids \['a'\]"):
        load_sweep(str(_write(tmp_path, base + "reference: a\n" + twice)))
    mixed = "cells:\n  - {id: a, exp: ct/unet}\n  - {id: b, exp: xray/segnet}\n"
    with pytest.raises(SweepError, match="mix modalities"):
        load_sweep(str(_write(tmp_path, base + "reference: a\n" + mixed)))
