"""Unsupervised fine-tuning (continual pre-training): causal next-token loss on the knowledge base.

Chunks are wrapped in BOS/EOS, concatenated and cut into fixed-size blocks; the loop is transformers'
``Trainer``, so the same code runs on one CPU, on 2 CPU processes or on 8 GPUs. Every weight is trained
(method ``full``), or an adapter over the frozen model (an adapter method of kinject.training.methods). The rules start
this module with the command kinject.training.launch builds (``accelerate launch ... -m kinject.training.finetune``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from kinject import precision as precisions
from kinject.device import check_gpu
from kinject.errors import KinjectError
from kinject.io import atomic_path
from kinject.training.blocks import (
    BlockDataset,
    _digest,
    gradient_accumulation,
    load_tokenizer,
    tokenize_blocks,
    training_texts,
)
from kinject.training.callbacks import (
    Interrupted,
    _epoch_models_callback,
    _loss_callback,
    _sigterm_callback,
    epoch_dir,
    loss_rows,
)
from kinject.training.checkpoints import EPOCHS_DIR, clear_work_dir, resume_checkpoint, save_final_model
from kinject.training.matched import cycle_blocks, matched_record
from kinject.training.methods import adapter_methods, data_methods
from kinject.training.trainer import trainer_class

log = logging.getLogger(__name__)

# the module each training rule launches
ENTRY_POINTS = {"finetune": "kinject.training.finetune", "hparam_trial": "kinject.training.hparams"}


def check_device(precision: str = "fp32", *, gpus: int = 0, allow_cpu: bool = False) -> str:
    """The device training will use ("cuda" or "cpu"), or a one-line error where the request cannot be met:
    kinject.device.check_gpu's decision (a job that asks for GPUs and finds no CUDA stops before any model
    loads, unless ``allow_cpu``), with ``precision`` resolved on that device (kinject.precision: bf16 on a GPU
    without it is an error, not a silent fp32; auto picks bf16 where it is native, fp32 elsewhere; bf16 on a
    CPU that emulates it warns)."""
    precisions.check_choice(precision)
    device = check_gpu(gpus, allow_cpu, "resources")
    precisions.resolve(precision, device)
    return device


def adapter_method(adapter: dict):
    """The adapter method of ``{option: spec}`` keywords (None: a whole model is trained); one error for an
    unknown option or two adapters at once."""
    unknown = sorted(set(adapter) - {m.option for m in adapter_methods()})
    if unknown:
        raise TypeError(f"not an adapter method's option: {unknown[0]}")
    chosen = [m for m in adapter_methods() if adapter.get(m.option) is not None]
    if len(chosen) > 1:
        raise TypeError(f"one adapter at a time, not {', '.join(m.option for m in chosen)}")
    return chosen[0] if chosen else None


def data_method(options: dict):
    """The method whose own examples a run trains on (its ``data_option`` set in ``options``), or None: packed text."""
    chosen = [m for m in data_methods() if options.get(m.data_option)]
    return chosen[0] if chosen else None


def training_data(path, options: dict) -> list:
    """What a run trains on: a data method's rows of its file (kinject.training.methods: read), else the file's
    ``text`` column."""
    method = data_method(options)
    return method.read(path) if method else training_texts(path)


def train_causal_lm(base, texts, out_dir, loss_csv, *, block_size: int = 256, lr: float, epochs: int,
                    batch_size: int = 64, per_device_batch_size: int = 8, seed: int = 0, work_dir,
                    save_steps: int | None = None, warmup_ratio: float = 0.0, weight_decay: float = 0.0,
                    eval_texts=None, precision: str = "fp32", gradient_checkpointing: bool = False,
                    save_dtype: str | None = None, gpus: int = 0, allow_cpu: bool = False,
                    threads: int | None = None, epoch_models=None, match_texts=None, **adapter: dict | None) -> dict:
    """Continual pre-training of ``base`` (hub id or local dir) on ``texts``; save to ``out_dir``.
    With ``adapter``, ``{option: spec}`` of an adapter method (kinject.training.methods: its option), that
    adapter over the frozen model is trained and saved instead. With a data method's flag (``{data_option: True}``,
    kinject.training.methods), ``texts`` are its rows (:func:`training_data`) and its examples, not packed blocks,
    are trained on (QA-SFT: each question-answer pair one example, the loss on its answer's tokens), in its own order
    where it has one (PIT: the QA pairs before the texts' blocks, kinject.training.pit).

    Master weights stay float32 (bf16 weights would round away updates at learning rates of 1e-5);
    ``precision`` bf16 computes in bf16 (autocast, on CPU too; under FSDP the library's bf16 policy); auto is
    bf16 where the device has it natively, else fp32 (kinject.precision); ``save_dtype`` None follows it.
    ``gradient_checkpointing`` recomputes activations in the backward pass. The model is saved in
    ``save_dtype`` as safetensors; with ``out_dir`` None it is not saved (the search's trials). Checkpoints
    go to ``work_dir`` (every ``save_steps`` steps, else every epoch; sharded under FSDP) and a rerun
    resumes from the newest one; they are deleted once ``out_dir`` is written. With ``eval_texts`` the
    packed-block loss on them is measured after every epoch. ``gpus``/``allow_cpu``: see :func:`check_device`;
    ``threads``: torch threads of this process. ``epoch_models``: a directory written (atomically, at the
    end) with the run's ``train_loss.csv`` and the model after the epoch of the lowest loss on ``eval_texts``
    (every epoch's model without them) as ``epoch{n}/`` in ``save_dtype``: a search trial keeps the one model
    the search can choose from it, which is then the model evaluated.

    The learning rate is constant after a linear warm-up of ``warmup_ratio`` of one epoch's steps: the
    first e epochs of a run do not depend on its total, so e epochs of training give the model that a
    search trial validated after epoch e. With ``match_texts`` (the steps-matched control,
    kinject.training.matched) the blocks of ``texts`` are repeated to the number of blocks of ``match_texts``: as
    many steps and tokens as a run on those, recorded as ``matched`` in the summary and training.json.
    Returns {steps, epochs, final_loss, tokens (per epoch), blocks, eval_loss_per_epoch[, matched]}.
    """
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments, default_data_collator

    from kinject.device import use_threads

    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    device = check_device(precision, gpus=gpus, allow_cpu=allow_cpu)
    cuda = device == "cuda"
    chosen = precisions.resolve(precision, device)
    save_dtype = precisions.save_dtype(save_dtype, chosen.name)
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # accelerate launch's --mixed_precision
    if launched is not None and launched != precisions.MIXED_PRECISION[chosen.name]:
        raise KinjectError("precision", f"the launch's mixed precision is {launched!r} but {precision} resolves to "
                                        f"{chosen.name} in the training process ({chosen.note})")
    if threads:
        use_threads(threads)
    work_dir = Path(work_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    log.info("%d process(es), %d torch thread(s) each, %s, gradient checkpointing %s", world_size,
             torch.get_num_threads(), chosen.note, "on" if gradient_checkpointing else "off")
    accumulation = gradient_accumulation(batch_size, per_device_batch_size, world_size)
    effective = accumulation * per_device_batch_size * world_size
    if effective != batch_size:
        log.warning("batch size %d requested; %d per device x %d processes x %d accumulation gives %d",
                    batch_size, per_device_batch_size, world_size, accumulation, effective)
    saving = {"save_strategy": "steps", "save_steps": save_steps} if save_steps else {"save_strategy": "epoch"}
    tokenizer = load_tokenizer(base)
    reader = data_method({m.data_option: adapter.pop(m.data_option, False) for m in data_methods()})
    blocks = reader.examples(tokenizer, texts, block_size) if reader else tokenize_blocks(tokenizer, texts, block_size)
    sampler, collate = None, default_data_collator
    if reader and reader.batching:  # its own order (PIT's phases) and batches of unequal examples
        sampler, collate = reader.batching(blocks, seed=seed, group=per_device_batch_size,
                                           pad_id=tokenizer.pad_token_id)
    matched = None
    if match_texts is not None:
        match = tokenize_blocks(tokenizer, match_texts, block_size)
        matched = matched_record(match, epochs=epochs, per_device_batch_size=per_device_batch_size,
                                 world_size=world_size, accumulation=accumulation)
        log.info("steps-matched: %d blocks of the original chunks repeated to %d blocks, %d steps", len(blocks),
                 len(match), matched["steps"])
        blocks = cycle_blocks(blocks, len(match))
    eval_data = BlockDataset(tokenize_blocks(tokenizer, eval_texts, block_size)) if eval_texts is not None else None
    warmup = round(warmup_ratio * math.ceil(len(blocks) / effective))
    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=epochs, learning_rate=lr, weight_decay=weight_decay,
        lr_scheduler_type="constant_with_warmup", warmup_steps=warmup,
        per_device_train_batch_size=per_device_batch_size,
        per_device_eval_batch_size=per_device_batch_size, gradient_accumulation_steps=accumulation,
        seed=seed, data_seed=seed, use_cpu=not cuda, bf16=chosen.name == "bf16",
        activation_checkpointing=gradient_checkpointing,
        logging_strategy="steps", logging_steps=1, eval_strategy="epoch" if eval_texts is not None else "no",
        save_total_limit=1, **saving, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=cuda, ddp_find_unused_parameters=False)
    run = {"base": str(base), "lr": lr, "epochs": epochs, "batch_size": effective, "block_size": block_size,
           "seed": seed, "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "data": _digest(blocks),
           "precision": chosen.name, "fsdp": os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true",
           "schedule": "constant_with_warmup", "epoch_models": epoch_models is not None,
           **{m.option: adapter.get(m.option) for m in adapter_methods()},
           **({reader.data_option: True} if reader else {}), **({"matched": matched} if matched else {})}
    with args.main_process_first(local=False, desc="checkpoint selection"):
        checkpoint = resume_checkpoint(work_dir, run, main_process=args.process_index == 0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    method = adapter_method(adapter)
    if method is not None:
        torch.manual_seed(seed)  # the adapter's random init: the run's seed, the same in every process
        model = method.wrap(model, adapter[method.option], gradient_checkpointing=gradient_checkpointing)
    epochs_root = work_dir / EPOCHS_DIR
    received = {"signal": False}
    callbacks = [_loss_callback(epochs_root / "train_loss.csv" if epoch_models is not None else loss_csv),
                 _sigterm_callback(received)]
    if epoch_models is not None:
        callbacks.append(_epoch_models_callback(tokenizer, epochs_root, save_dtype, chosen.record,
                                                method and method.saved_weight))
    trainer = trainer_class()(
        model=model, args=args, train_dataset=BlockDataset(blocks), eval_dataset=eval_data,
        data_collator=collate, processing_class=tokenizer, callbacks=callbacks, sampler=sampler)
    for callback in callbacks[2:]:
        callback.trainer = trainer
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    # SIGTERM only sets a flag (the default action would kill the process mid-step and lose the steps since
    # the last checkpoint); the callback saves and stops. Outside the main thread no handler can be set.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: received.update(signal=True)) if main_thread else None
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    history = trainer.state.log_history
    eval_losses = [e["eval_loss"] for e in history if "eval_loss" in e]
    if epoch_models is not None and trainer.is_world_process_zero():
        keep = {"train_loss.csv"}
        if eval_losses:  # the epoch of the lowest loss on eval_texts (the first of equals), as the search chooses
            keep.add(epoch_dir(epochs_root, eval_losses.index(min(eval_losses)) + 1).name)
        else:
            keep |= {p.name for p in epochs_root.glob("epoch*")}
        with atomic_path(epoch_models, directory=True) as tmp:
            for item in epochs_root.iterdir():
                if item.name in keep:
                    shutil.move(item, tmp / item.name)
        if loss_csv is not None:
            shutil.copyfile(Path(epoch_models) / "train_loss.csv", loss_csv)
    if out_dir is not None:
        staging = work_dir / "final"
        save_final_model(trainer, tokenizer, staging, save_dtype, {**chosen.record, **({"matched": matched} if matched
                         else {})}, method and method.saved_weight)
        if trainer.is_world_process_zero():
            with atomic_path(out_dir, directory=True) as tmp:
                for item in staging.iterdir():
                    shutil.move(item, tmp / item.name)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        clear_work_dir(work_dir)
    losses = loss_rows(history)
    summary = {"steps": trainer.state.global_step, "epochs": epochs,
               "final_loss": losses[-1]["loss"] if losses else None,
               "tokens": sum(sum(b["attention_mask"]) if isinstance(b, dict) else len(b) for b in blocks),
               "blocks": len(blocks), "eval_loss_per_epoch": eval_losses,
               **({"matched": matched} if matched else {})}
    log.info("fine-tuned %s -> %s: %s", base, out_dir, summary)
    return summary


def eval_loss(model_path, texts, *, block_size: int = 256, batch_size: int = 8) -> float:
    """Mean next-token NLL (nats per predicted token) of ``texts`` packed into blocks."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(model_path)
    blocks = tokenize_blocks(tokenizer, texts, block_size)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            ids = torch.tensor(blocks[i:i + batch_size], device=device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                                                    reduction="sum")
            total, count = total + nll.item(), count + ids[:, 1:].numel()
    return total / count


def read_hparams(path) -> dict:
    """{lr, epochs} chosen by the hyper-parameter search (kinject.training.hparams.choose)."""
    try:
        chosen = json.loads(Path(path).read_text())
        return {"lr": float(chosen["lr"]), "epochs": int(chosen["epochs"])}
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise KinjectError(path, f"not a chosen-hyper-parameters file ({exc})") from None


def training_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every training entry point takes (:func:`kinject.training.launch.launch_command` writes them)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--base", required=True, help="hub id or local directory (from_pretrained)")
    p.add_argument("--train", required=True, help="parquet with a 'text' column")
    p.add_argument("--work-dir", required=True, help="checkpoints; a rerun resumes from them")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--per-device-batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=precisions.CHOICES, default=precisions.AUTO,
                   help="auto: bf16 where the device has it natively, else fp32 (kinject.precision)")
    p.add_argument("--save-dtype", choices=precisions.CHOICES, default=precisions.AUTO,
                   help="dtype of the saved model(s); auto: the precision the run resolved")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--gpus", type=int, default=0, help="GPUs the job asked for: without CUDA an error, unless --allow-cpu")
    p.add_argument("--allow-cpu", action="store_true")
    p.add_argument("--threads", type=int, help="torch threads of each process")
    for method in adapter_methods():
        p.add_argument(f"--{method.option}", type=json.loads, help=f"train a {method.label} adapter: its spec as JSON")
    for method in data_methods():
        p.add_argument(f"--{method.data_option.replace('_', '-')}", action="store_true",
                       help=f"--train is {method.label}'s file: train on its examples")
    return p


def training_options(args) -> dict:
    """The keyword arguments of :func:`train_causal_lm` that every training entry point passes on."""
    return {key: getattr(args, key) for key in ("block_size", "batch_size", "per_device_batch_size", "seed",
                                                "work_dir", "precision", "save_dtype", "gradient_checkpointing",
                                                "gpus", "allow_cpu", "threads",
                                                *(m.option for m in adapter_methods()),
                                                *(m.data_option for m in data_methods()))}


def run_entry_point(run, args) -> None:
    """Check the device first (before any input or model is read), log to stderr; bad input exits 1 with one line,
    a training stopped by SIGTERM (its checkpoint saved) exits 128 + SIGTERM with one line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        check_device(args.precision, gpus=args.gpus, allow_cpu=args.allow_cpu)
        run(args)
    except KinjectError as err:
        print(f"kinject error: {err}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM if isinstance(err, Interrupted) else 1)


def parse_args(argv=None):
    p = training_parser("python -m kinject.training.finetune", __doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for the fine-tuned model")
    p.add_argument("--loss-csv", required=True)
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--hparams", help="chosen.json of the search: its lr and epochs (instead of --lr/--epochs)")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default: every epoch)")
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--match-steps-of", help="a steps-matched control: train --train's blocks, repeated, for as many "
                                            "steps as a run on this parquet's (kinject.training.matched)")
    args = p.parse_args(argv)
    if not args.hparams and (args.lr is None or args.epochs is None):
        p.error("--lr and --epochs are required without --hparams")
    return args


def _finetune(args) -> None:
    hp = read_hparams(args.hparams) if args.hparams else {"lr": args.lr, "epochs": args.epochs}
    match = training_texts(args.match_steps_of) if args.match_steps_of else None
    train_causal_lm(args.base, training_data(args.train, vars(args)), args.out, args.loss_csv, match_texts=match,
                    save_steps=args.save_steps, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                    **training_options(args), **hp)


def main(argv=None) -> None:
    run_entry_point(_finetune, parse_args(argv))


if __name__ == "__main__":
    main()
