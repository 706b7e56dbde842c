import csv

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_modules.complexity import (
    cli,
    count_gmacs,
    count_parameters,
    format_markdown,
    model_table,
    write_csv,
    write_markdown,
)


def test_count_gmacs_of_one_convolution():
    # 8 output maps x 3 input maps x 3 x 3 taps at 16 x 16 output pixels
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_gmacs(conv, (1, 3, 16, 16)) * 1e9 == pytest.approx(8 * 3 * 9 * 16 * 16)


def test_count_gmacs_of_linear_and_transposed_convolution():
    assert count_gmacs(nn.Linear(10, 4), (2, 10)) * 1e9 == pytest.approx(2 * 10 * 4)
    # a transposed conv costs in_pixels x out_channels x taps (thop counts out_pixels instead)
    up = nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1, bias=False)
    assert count_gmacs(up, (1, 4, 8, 8)) * 1e9 == pytest.approx(4 * 8 * 8 * 2 * 16)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, x):  # x: B x heads x tokens x dim
        return F.scaled_dot_product_attention(x, x, x) + self.anchor


def test_count_gmacs_counts_cpu_attention():
    # Q K^T and A V: 2 x (batch 1 x 2 heads x 5 x 5 tokens x 4 dims)
    assert count_gmacs(Attention(), (1, 2, 5, 4)) * 1e9 == pytest.approx(2 * 2 * 5 * 5 * 4)


def test_meta_device_count_equals_cpu_count():
    def build():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))

    with torch.device("meta"):
        on_meta = build()
    assert count_gmacs(on_meta, (1, 1, 32, 32)) == count_gmacs(build(), (1, 1, 32, 32))


def test_count_gmacs_restores_training_mode():
    conv = nn.Conv2d(1, 1, 1).train()
    count_gmacs(conv, (1, 1, 4, 4))
    assert conv.training


def test_count_parameters_counts_bn_affine_not_running_stats():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
    assert count_parameters(model) == 3 * 8 * 9 + 2 * 8
    model[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 16


@pytest.fixture(scope="module")
def rows():
    return model_table(["unet", "transunet_lite"])


def test_model_table_rows(rows):
    unet, lite = rows
    assert unet["model"] == "unet" and unet["encoder"] == "resnet34"
    assert (unet["in_channels"], unet["classes"]) == (1, 2)
    assert unet["params"] == 24_430_242 and unet["paper_params"] == 24.43e6
    assert unet["gmacs"] == pytest.approx(7.7207, abs=1e-3) and unet["paper_gmacs"] == 7.76
    assert lite["params"] == 67_066_754 and lite["paper"] == "ct"


def test_table_writers(rows, tmp_path):
    markdown = write_markdown(rows, tmp_path / "t" / "model_table.md").read_text()
    assert markdown == format_markdown(rows)
    row = "| unet | resnet34 | ct | 24,430,242 | 24.43 | 24.43 | +0.0% | 7.72 | 7.76 | -0.5% |"
    assert row in markdown.splitlines()
    with open(write_csv(rows, tmp_path / "model_table.csv")) as handle:
        table = list(csv.DictReader(handle))
    assert [r["model"] for r in table] == ["unet", "transunet_lite"]
    assert int(table[1]["params"]) == 67_066_754
    assert float(table[1]["paper_params"]) == 66.8e6


def test_cli_writes_both_files(tmp_path, capsys):
    assert cli(["--models", "linknet", "--out", str(tmp_path)]) == 0
    assert "| linknet | resnet34 | ct | 21,765,698 |" in capsys.readouterr().out
    assert (tmp_path / "model_table.md").is_file() and (tmp_path / "model_table.csv").is_file()


def test_cli_refuses_unknown_models(capsys):
    with pytest.raises(SystemExit):
        cli(["--models", "unet", "no_such_net"])
    assert "no_such_net" in capsys.readouterr().err
