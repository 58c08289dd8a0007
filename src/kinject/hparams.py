"""Learning-rate / epochs search on the held-out validation paraphrases (a sub-DAG of the pipeline).

A trial is a fine-tuning job like rule finetune's, started by the same command builder
(:func:`kinject.finetune.launch_command`) with the same accelerate config (FSDP on a GPU cluster):

    python -m accelerate.commands.launch --config_file ... --num_processes 4 -m kinject.hparams --base ... \\
        --train paraphrases_k0.parquet --validation paraphrases.parquet --out lr1e-05.json --lr 1e-05 ...
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from kinject.errors import KinjectError
from kinject.finetune import run_entry_point, train_causal_lm, training_options, training_parser, training_texts
from kinject.io import write_json

log = logging.getLogger(__name__)


def run_trial(base, train_parquet, validation_parquet, out, *, lr: float, max_epochs: int, work_dir,
              **training) -> dict:
    """Fine-tune with one learning rate for ``max_epochs``; record the validation loss after each epoch.

    ``training``: the other keyword arguments of :func:`kinject.finetune.train_causal_lm` (block and batch
    sizes, seed, precision, ...). The trial's model is not saved (a 7B checkpoint per trial would fill the
    disk); under ``accelerate launch`` the main process writes ``out``.
    """
    result = train_causal_lm(
        base, training_texts(train_parquet), None, Path(work_dir) / "train_loss.csv", lr=lr, epochs=max_epochs,
        work_dir=Path(work_dir) / "checkpoints", eval_texts=training_texts(validation_parquet), **training)
    trial = {"lr": lr, "val_loss_per_epoch": result["eval_loss_per_epoch"], "final_train_loss": result["final_loss"]}
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(out, trial)
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


def parse_args(argv=None):
    p = training_parser("python -m kinject.hparams", "One trial of the learning-rate / epochs search.")
    p.add_argument("--validation", required=True, help="parquet of held-out validation paraphrases ('text')")
    p.add_argument("--out", required=True, help="the trial's JSON: validation loss per epoch")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--max-epochs", type=int, required=True)
    return p.parse_args(argv)


def _trial(args) -> None:
    options = training_options(args)
    run_trial(args.base, args.train, args.validation, args.out, lr=args.lr, max_epochs=args.max_epochs,
              work_dir=options.pop("work_dir"), **options)


def main(argv=None) -> None:
    run_entry_point(_trial, parse_args(argv))


if __name__ == "__main__":
    main()
