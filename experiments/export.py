"""``ptx export --model RUN --out DIR``: a run as a portable bundle."""

from __future__ import annotations

import argparse
import logging
import sys

from datamodules.io.errors import DataError
from experiments.cli import HelpFormatter
from lightning_modules.bundle import TOLERANCE, export_bundle
from lightning_modules.inference import ModelError


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="ptx export",
        description="Write model.safetensors, config.json and model.onnx (checked with "
        f"onnxruntime against PyTorch: max |logit difference| <= {TOLERANCE:g}).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", required=True, help="a run folder (its best.ckpt) or a .ckpt")
    p.add_argument("--out", required=True, help="bundle folder")
    p.add_argument("--no-onnx", action="store_true", help="safetensors + config.json only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[export] %(message)s", stream=sys.stderr)
    try:
        config = export_bundle(args.model, args.out, onnx=not args.no_onnx)
    except ModelError as err:
        raise DataError(str(err)) from err
    onnx = (
        f"; model.onnx ({'dynamic' if config['onnx_dynamic_size'] else 'fixed'} size, max "
        f"|logit difference| {config['onnx_max_abs_difference']:.1e})"
        if "onnx_max_abs_difference" in config
        else ""
    )
    print(f"bundle {args.out}: {config['net']} {config['net_kwargs']}{onnx}")
    return 0
