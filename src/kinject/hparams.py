"""Learning-rate / epochs search on the held-out validation paraphrases (a sub-DAG of the pipeline)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from kinject.errors import KinjectError
from kinject.finetune import train_causal_lm, training_texts
from kinject.io import write_json

log = logging.getLogger(__name__)


def run_trial(base, train_parquet, validation_parquet, out, *, lr: float, finetune: dict, seed: int, work_dir) -> dict:
    """Fine-tune with one learning rate for up to max_epochs; record the validation loss after each epoch.
    The trial's model is deleted afterwards (a 7B checkpoint per trial would fill the disk)."""
    trial_model = Path(work_dir) / "model"
    result = train_causal_lm(
        base, training_texts(train_parquet), trial_model, Path(work_dir) / "train_loss.csv",
        block_size=finetune["block_size"], lr=lr, epochs=finetune["search"]["max_epochs"],
        batch_size=finetune["batch_size"], per_device_batch_size=finetune["per_device_batch_size"], seed=seed,
        work_dir=Path(work_dir) / "checkpoints", eval_texts=training_texts(validation_parquet))
    trial = {"lr": lr, "val_loss_per_epoch": result["eval_loss_per_epoch"], "final_train_loss": result["final_loss"]}
    write_json(out, trial)
    shutil.rmtree(trial_model, ignore_errors=True)
    log.info("lr %g: validation loss per epoch %s", lr, trial["val_loss_per_epoch"])
    return trial


def choose(trial_paths, out) -> dict:
    """The (lr, epochs) with the lowest validation loss over every trial and epoch."""
    best = None
    for path in trial_paths:
        try:
            trial = json.loads(Path(path).read_text())
            losses = [float(x) for x in trial["val_loss_per_epoch"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise KinjectError(path, f"not a hyper-parameter trial ({exc})") from None
        for epoch, loss in enumerate(losses, 1):
            if best is None or loss < best["val_loss"]:
                best = {"lr": trial["lr"], "epochs": epoch, "val_loss": loss}
    if best is None:
        raise KinjectError(trial_paths[0] if trial_paths else out, "no validation loss in any trial")
    write_json(out, best)
    log.info("chosen: lr %g, %d epochs (validation loss %.4f)", best["lr"], best["epochs"], best["val_loss"])
    return best
