"""Read an offline W&B run file (``run-<id>.wandb``) with W&B's own protobuf records.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, a magic, a version), then 32 KiB
blocks of chunks, each a 7-byte chunk header (checksum, little-endian length, type: 1 full, 2 first,
3 middle, 4 last) and its bytes; a record is one full chunk or first..last chunks.
"""

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    out, pos, parts = [], HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        parts.append(chunk)
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            out.append(rec)
            parts = []
    return out


def history_and_summary(path: Path) -> tuple[list[dict], dict]:
    """Every logged history row (``{key: value}``, ``_step`` included) and the final summary."""
    history, summary = [], {}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return history, summary
