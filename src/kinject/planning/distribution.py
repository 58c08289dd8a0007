"""How a training job is spread over its processes, as the plan models it: the sharding strategy, offload and
loading of the accelerate config file (``finetune.accelerate_config``). The file is read and checked by the
launcher's own reader (``kinject.training.launch.read_accelerate_config``), so the plan accepts exactly the
files the training jobs can launch with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kinject.errors import KinjectError
from kinject.training.launch import file_mixed_precision, read_accelerate_config

SHARDED = ("FULL_SHARD", "SHARD_GRAD_OP")
FSDP1_STRATEGIES = {1: "FULL_SHARD", 2: "SHARD_GRAD_OP", 3: "NO_SHARD", 4: "FULL_SHARD", 5: "SHARD_GRAD_OP",
                    "FULL_SHARD": "FULL_SHARD", "SHARD_GRAD_OP": "SHARD_GRAD_OP", "NO_SHARD": "NO_SHARD",
                    # one node per job: hybrid sharding shards over all of the job's processes
                    "HYBRID_SHARD": "FULL_SHARD", "HYBRID_SHARD_ZERO2": "SHARD_GRAD_OP"}
STRATEGY_WORDS = {"FULL_SHARD": "FSDP full shard", "SHARD_GRAD_OP": "FSDP shard grad+optimizer",
                  "NO_SHARD": "FSDP no shard", "DDP": "plain data parallelism"}


@dataclass(frozen=True)
class Distribution:
    strategy: str  # FULL_SHARD | SHARD_GRAD_OP | NO_SHARD | DDP
    mixed_precision: str | None  # the accelerate file's own (None: none); the launch's --mixed_precision overrides it
    offload: bool = False  # FSDP parameter/optimizer offload to host memory
    efficient_loading: bool = False  # rank 0 loads the checkpoint, the others get its shards
    source: str = "no finetune.accelerate_config"

    @property
    def words(self) -> str:
        return STRATEGY_WORDS[self.strategy]


def read_distribution(path) -> Distribution:
    """The sharding an accelerate config file asks for (FSDP 1 or 2, MULTI_GPU or single process)."""
    path = Path(path)
    cfg = read_accelerate_config(path)
    kind, mixed = cfg["distributed_type"], file_mixed_precision(cfg)
    if kind in ("NO", "MULTI_GPU", "MULTI_CPU"):
        return Distribution("DDP", mixed, source=str(path))
    if kind != "FSDP":
        raise KinjectError(path, f"distributed_type {kind!r}: kinject plan models FSDP, MULTI_GPU, MULTI_CPU and NO")
    fsdp = cfg.get("fsdp_config") or {}
    if int(fsdp.get("fsdp_version", 1)) == 2:
        strategy = "FULL_SHARD" if fsdp.get("fsdp_reshard_after_forward", True) else "SHARD_GRAD_OP"
    else:
        given = fsdp.get("fsdp_sharding_strategy", "FULL_SHARD")
        strategy = FSDP1_STRATEGIES.get(given)
        if strategy is None:
            raise KinjectError(path, f"fsdp_sharding_strategy {given!r} is not one of {sorted(map(str, FSDP1_STRATEGIES))}")
    return Distribution(strategy, mixed, offload=bool(fsdp.get("fsdp_offload_params", False)),
                        efficient_loading=bool(fsdp.get("fsdp_cpu_ram_efficient_loading", False)), source=str(path))
