"""Model weights on disk, checked by name and size only (no tensor is read): what a folder's shard indexes
list and the folder lacks. Shared by the check of a local model folder before any job
(kinject.provenance.hub) and the check of a Trainer checkpoint before resuming from it
(kinject.training.checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path


def shard_problem(folder, pattern: str = "*.index.json") -> str | None:
    """Why the shards a folder's indexes (``pattern``: ``model.safetensors.index.json``,
    ``pytorch_model.bin.index.json``) list are not all there: an index unreadable, or the first shard missing
    with the count of those missing; None when every listed shard is a file."""
    folder = Path(folder)
    for index in sorted(folder.glob(pattern)):
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return f"{index.name} is not a readable shard index"
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            return f"{missing[0]} is missing ({len(missing)} of the {len(shards)} shards {index.name} lists)"
    return None
