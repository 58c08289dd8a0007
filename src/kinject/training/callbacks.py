"""What a training run does beside its steps (Trainer callbacks): the per-step loss written when it ends, a
SIGTERM (a SLURM time limit) turned into a saved checkpoint and a clean stop, and a search trial's model after
every epoch."""

from __future__ import annotations

import csv
import io
import logging
import shutil
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import write_text
from kinject.training.checkpoints import save_final_model

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["step", "epoch", "loss", "learning_rate"]


def loss_rows(log_history) -> list[dict]:
    """Per-step training-loss rows from a Trainer's ``log_history`` (which survives resumption)."""
    return [{"step": e["step"], "epoch": e["epoch"], "loss": e["loss"], "learning_rate": e.get("learning_rate")}
            for e in log_history if "loss" in e]


def write_loss_csv(path, rows) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOSS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def _loss_callback(loss_csv):
    from transformers import TrainerCallback

    class LossCsv(TrainerCallback):
        """Write the per-step loss of the whole run (resumed parts included) when training ends."""

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                write_loss_csv(loss_csv, loss_rows(state.log_history))

    return LossCsv()


class Interrupted(KinjectError):
    """Training stopped by SIGTERM after saving a checkpoint; the entry point exits 128 + SIGTERM and a rerun
    resumes from the checkpoint."""


def _any_process(flag: bool, args) -> bool:
    """Whether ``flag`` is set in any training process: every process must stop at the same step, since the
    save under FSDP is collective and a signal reaches the processes at different moments."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], device=args.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _sigterm_callback(received: dict):
    """Save a checkpoint and stop once SIGTERM arrived (``received["signal"]``, set by the handler
    :func:`train_causal_lm` installs): SLURM's time limit, scancel, or the launcher forwarding either.

    The checkpoint is written at the end of the step the signal arrived in; at an epoch's last step it waits
    for the epoch's end, so the epoch's evaluation and model (a search trial's) are in it. Raising
    :class:`Interrupted` from ``on_save`` leaves the Trainer before anything else is written.
    """
    from transformers import TrainerCallback

    class StopOnSigterm(TrainerCallback):
        stop = False

        def on_step_end(self, args, state, control, **kwargs):
            if _any_process(received["signal"], args) and not self.stop:
                self.stop = True
                log.warning("SIGTERM received: saving a checkpoint at step %d%s, then stopping", state.global_step,
                            " after the epoch's end" if float(state.epoch).is_integer() else "")
            if self.stop and not float(state.epoch).is_integer():
                control.should_save = True
            return control

        def on_epoch_end(self, args, state, control, **kwargs):
            if self.stop:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            if self.stop:
                raise Interrupted(Path(args.output_dir) / f"checkpoint-{state.global_step}",
                                  f"saved after SIGTERM at step {state.global_step}; a rerun resumes from it")

    return StopOnSigterm()




def epoch_dir(root, epoch: int) -> Path:
    """Where a search trial keeps the model after ``epoch`` (1-based): ``root/epoch{epoch}``."""
    return Path(root) / f"epoch{epoch}"


def _epoch_models_callback(tokenizer, root, save_dtype: str, meta: dict, saved_weight=None):
    """Save the model after every epoch to ``root/epoch{n}`` (a search trial keeps each epoch's model, so the
    chosen one is the evaluated one). Every process takes part (under FSDP the weights are gathered)."""
    from transformers import TrainerCallback

    class EpochModels(TrainerCallback):
        trainer = None

        def on_epoch_end(self, args, state, control, **kwargs):
            epoch = round(state.epoch)
            target = epoch_dir(root, epoch)
            staging = Path(root) / f".epoch{epoch}.partial"
            if self.trainer.is_world_process_zero():
                shutil.rmtree(staging, ignore_errors=True)
            save_final_model(self.trainer, tokenizer, staging, save_dtype, meta, saved_weight)
            if self.trainer.is_world_process_zero():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
            self.trainer.accelerator.wait_for_everyone()

    return EpochModels()
