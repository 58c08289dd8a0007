"""transformers' Trainer as kinject runs it (kinject.training.finetune): an accelerate FSDP launch config honoured on
CPU processes too, and a data method's own training order (kinject.training.methods: batching)."""

from __future__ import annotations

import logging
import os

from kinject.errors import KinjectError

log = logging.getLogger(__name__)


def shard_on_cpu(accelerator) -> bool:
    """Keep an accelerate FSDP launch config on CPU processes: FSDP2 (``fully_shard``) over gloo.

    accelerate (1.15) applies an FSDP config only on accelerator devices: on CPU processes its state
    says MULTI_CPU and the model would be wrapped in plain DDP, unsharded, without a word. torch's FSDP2
    runs on CPU over gloo, so a MULTI_CPU state under an FSDP launch becomes FSDP with the plugin
    accelerate builds from the same config file (the launcher's ``FSDP_*`` variables). Returns whether it did.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or \
            state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise KinjectError("finetune.accelerate_config", "FSDP on CPU processes needs fsdp_version: 2 (FSDP2)")
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    log.info("FSDP2 on CPU: %d gloo process(es), parameters sharded (accelerate would run DDP)", state.num_processes)
    return True


def trainer_class():
    from transformers import Trainer

    class KinjectTrainer(Trainer):
        """transformers' Trainer, with an FSDP launch config honoured on CPU processes too (:func:`shard_on_cpu`)
        and a data method's own training order (``sampler``, kinject.training.methods: batching) where it has one."""

        def __init__(self, *args, sampler=None, **kwargs):
            self.kinject_sampler = sampler
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            return self.kinject_sampler or super()._get_train_sampler(train_dataset)

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if shard_on_cpu(self.accelerator):
                self.is_fsdp_enabled = True

    return KinjectTrainer
