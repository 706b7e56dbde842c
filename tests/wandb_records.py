"""Read an offline W&B run (``run-<id>.wandb``) the way ``wandb sync`` will upload it.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then
LevelDB-log blocks of 32 KiB holding protobuf ``Record`` messages, each split in chunks
with a 7-byte header (CRC-32C, length, chunk type: full, first, middle, last). wandb >= 0.19
no longer ships a Python reader, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    """Every record of the run file, in order."""
    data, out, chunks, offset = Path(path).read_bytes(), [], b"", HEADER
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    while offset + HEADER <= len(data):
        if BLOCK - offset % BLOCK < HEADER:  # the rest of a block is padding
            offset += BLOCK - offset % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        if length == 0 and kind == 0:
            offset += BLOCK - offset % BLOCK
            continue
        chunk = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        chunks = chunk if kind in (FULL, FIRST) else chunks + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunks)
            out.append(record)
    return out


def run_summary(run_dir: Path) -> dict:
    """``{"project", "group", "tags", "config"}`` of the offline run under ``run_dir/wandb``;
    config keys are the top-level ones with their values decoded from JSON."""
    (path,) = Path(run_dir).glob("**/offline-run-*/run-*.wandb")
    config, project, group, tags = {}, None, None, []
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            project, group, tags = record.run.project, record.run.run_group, list(record.run.tags)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            continue
        for item in updates:
            key = item.key or "/".join(item.nested_key)
            config[key] = json.loads(item.value_json)
    return {"project": project, "group": group, "tags": tags, "config": config}
