"""Learning-rate / epochs search on the held-out validation paraphrases (a sub-DAG of the pipeline).

A trial is a fine-tuning job like rule finetune's, started by the same command builder
(:func:`kinject.training.launch.launch_command`) with the same accelerate config (FSDP on a GPU cluster):

    python -m accelerate.commands.launch --config_file ... --num_processes 4 -m kinject.training.hparams --base ... \\
        --train paraphrases_k0.parquet --validation paraphrases.parquet --out lr1e-05.json --lr 1e-05 ...
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_json
from kinject.training.adapters import is_adapter
from kinject.training.blocks import training_texts
from kinject.training.callbacks import epoch_dir, write_loss_csv
from kinject.training.finetune import (
    read_hparams,
    run_entry_point,
    train_causal_lm,
    training_data,
    training_options,
    training_parser,
)

log = logging.getLogger(__name__)


def run_trial(base, train_parquet, validation_parquet, out, *, lr: float, max_epochs: int, work_dir, models,
              **training) -> dict:
    """Fine-tune with one learning rate for ``max_epochs``; record the validation loss after each epoch.

    ``training``: the other keyword arguments of :func:`kinject.training.finetune.train_causal_lm` (block and batch
    sizes, seed, precision, save_dtype, ...). ``models`` is written with the trial's ``train_loss.csv`` and
    the model after its epoch of lowest validation loss (``epoch{n}/``, in save_dtype): the one model of this
    trial that :func:`choose` can pick, so the search's choice (lr, epochs) is a model that exists and is the
    one evaluated (rule validated_model), not a retrained look-alike.
    Under ``accelerate launch`` the main process writes ``out``.
    """
    result = train_causal_lm(
        base, training_data(train_parquet, training), None, None, lr=lr, epochs=max_epochs,
        work_dir=Path(work_dir) / "checkpoints", eval_texts=training_texts(validation_parquet),
        epoch_models=models, **training)
    trial = {"lr": lr, "val_loss_per_epoch": result["eval_loss_per_epoch"], "final_train_loss": result["final_loss"]}
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(out, trial)
    log.info("lr %g: validation loss per epoch %s", lr, trial["val_loss_per_epoch"])
    return trial


def choose(trial_paths, out) -> dict:
    """The (lr, epochs) with the lowest validation loss over every trial and epoch, for every method alike.
    ``lr_at_edge``: "lowest" or "highest" when the chosen rate is at that end of a grid of two or more rates
    (the best rate may lie beyond the grid: a warning says so), else None."""
    best, rates = None, set()
    for path in trial_paths:
        try:
            trial = json.loads(Path(path).read_text())
            losses = [float(x) for x in trial["val_loss_per_epoch"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise KinjectError(path, f"not a hyper-parameter trial ({exc})") from None
        rates.add(trial["lr"])
        for epoch, loss in enumerate(losses, 1):
            if best is None or loss < best["val_loss"]:
                best = {"lr": trial["lr"], "epochs": epoch, "val_loss": loss}
    if best is None:
        raise KinjectError(trial_paths[0] if trial_paths else out, "no validation loss in any trial")
    grid = sorted(rates)
    best["lr_at_edge"] = None if len(grid) < 2 else {grid[0]: "lowest", grid[-1]: "highest"}.get(best["lr"])
    if best["lr_at_edge"]:
        log.warning("the chosen lr %g is the %s of the search's rates %s: a better one may lie beyond them; "
                    "widen the grid to know", best["lr"], best["lr_at_edge"], ", ".join(f"{r:g}" for r in grid))
    write_json(out, best)
    log.info("chosen: lr %g, %d epochs (validation loss %.4f)", best["lr"], best["epochs"], best["val_loss"])
    return best


def parse_args(argv=None):
    p = training_parser("python -m kinject.training.hparams", "One trial of the learning-rate / epochs search.")
    p.add_argument("--validation", required=True, help="parquet of held-out validation paraphrases ('text')")
    p.add_argument("--out", required=True, help="the trial's JSON: validation loss per epoch")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--max-epochs", type=int, required=True)
    p.add_argument("--models", required=True, help="directory for the model after every epoch (epoch1/, ...)")
    return p.parse_args(argv)


def _trial(args) -> None:
    options = training_options(args)
    run_trial(args.base, args.train, args.validation, args.out, lr=args.lr, max_epochs=args.max_epochs,
              work_dir=options.pop("work_dir"), models=args.models, **options)


def adopt(chosen_path, trial_paths, model_dirs, checkpoint, loss_csv) -> str:
    """Rule validated_model: the search's chosen trial's model at the chosen epoch becomes the fine-tuned
    checkpoint (or adapter) of paraphrase set 0 (the trials trained on it), with that trial's loss rows up
    to that epoch.

    Files are hard-linked (no second copy on disk); where the file system refuses, copied (logged).
    """
    chosen = read_hparams(chosen_path)
    lrs = []
    for path in trial_paths:
        try:
            lrs.append(float(json.loads(Path(path).read_text())["lr"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise KinjectError(path, f"not a hyper-parameter trial ({exc})") from None
    if chosen["lr"] not in lrs:
        raise KinjectError(chosen_path, f"lr {chosen['lr']:g} is not one of the trials' ({', '.join(map(str, lrs))})")
    trial = Path(model_dirs[lrs.index(chosen["lr"])])
    source = epoch_dir(trial, chosen["epochs"])
    if not ((source / "config.json").exists() or is_adapter(source)):  # a model, or an adapter run's adapter
        raise KinjectError(source, f"no model saved after epoch {chosen['epochs']} (the trial's models are incomplete)")
    with atomic_path(checkpoint, directory=True) as tmp:
        for item in sorted(source.iterdir()):
            try:
                os.link(item, tmp / item.name)
            except OSError as exc:
                log.warning("cannot hard-link %s (%s): copying it", item, exc)
                shutil.copy2(item, tmp / item.name)
    rows = pd.read_csv(trial / "train_loss.csv")
    # the Trainer logs a step's epoch as a fraction; the last step of epoch e is logged at exactly e
    write_loss_csv(loss_csv, rows[rows["epoch"] <= chosen["epochs"] + 1e-9].to_dict("records"))
    return (f"lr {chosen['lr']:g}, epoch {chosen['epochs']} of trial {trial}: {source} is the fine-tuned model "
            "(no retraining)")


def main(argv=None) -> None:
    run_entry_point(_trial, parse_args(argv))


if __name__ == "__main__":
    main()
