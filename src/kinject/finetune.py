"""Unsupervised fine-tuning (continual pre-training): causal next-token loss on the knowledge base.

Chunks are wrapped in BOS/EOS, concatenated and cut into fixed-size blocks; the loop is transformers'
``Trainer``, so the same code runs on one CPU or under ``accelerate launch --num_processes N``:

    accelerate launch --num_processes 4 --multi_gpu -m kinject.finetune --base meta-llama/Llama-2-7b-hf \\
        --train paraphrases_k0.parquet --out ckpt --loss-csv train_loss.csv --lr 1e-5 --epochs 5 \\
        --batch-size 64 --per-device-batch-size 4 --block-size 256 --seed 0 --work-dir .work/ft
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from kinject.cli import log_job_environment
from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet, write_text

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["step", "epoch", "loss", "learning_rate"]
RUN_FILE = "run.json"


def pack_blocks(docs_token_ids: list[list[int]], block_size: int, bos_id: int, eos_id: int) -> list[list[int]]:
    """Wrap each doc as [bos] + ids + [eos], concatenate, cut into blocks of exactly ``block_size``.

    A BOS/EOS the tokenizer already put at a doc's edge is not doubled. The tail shorter than a block
    is dropped (as transformers' run_clm does), except when the whole stream is shorter than one block:
    then it is the only block, so a tiny corpus still trains.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if not docs_token_ids:
        raise ValueError("no documents to pack")
    stream: list[int] = []
    for ids in docs_token_ids:
        ids = list(ids)
        if not ids or ids[0] != bos_id:
            ids.insert(0, bos_id)
        if len(ids) == 1 or ids[-1] != eos_id:
            ids.append(eos_id)
        stream.extend(ids)
    if len(stream) < block_size:
        return [stream]
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def training_texts(parquet_path) -> list[str]:
    """The ``text`` column of a chunk / paraphrase-set parquet."""
    return [str(t) for t in read_parquet(parquet_path, columns=["text"])["text"]]


def load_tokenizer(base):
    """``AutoTokenizer`` for ``base``; a tokenizer without a pad token pads with EOS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize_blocks(tokenizer, texts, block_size: int) -> list[list[int]]:
    """Tokenize ``texts`` with ``tokenizer`` and pack them (BOS falls back to EOS for BOS-less tokenizers)."""
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to train or evaluate on")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return pack_blocks(ids, block_size, bos, tokenizer.eos_token_id)


class BlockDataset:
    """Map-style dataset of equal-length blocks; labels are the inputs (the model shifts them)."""

    def __init__(self, blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        import torch

        ids = torch.tensor(self.blocks[i], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}


def gradient_accumulation(batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that one step sees about ``batch_size`` blocks."""
    return max(1, batch_size // (per_device_batch_size * world_size))


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


def resume_checkpoint(work_dir, run: dict, *, main_process: bool):
    """The newest complete checkpoint in ``work_dir`` of the same run, or None to start afresh.

    A checkpoint counts once its ``trainer_state.json`` (the Trainer's last write) exists. The main
    process deletes incomplete checkpoints, and all of them when ``run`` (the settings) changed.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    work_dir = Path(work_dir)
    run_file = work_dir / RUN_FILE
    same_run = run_file.exists() and json.loads(run_file.read_text()) == run
    checkpoints = sorted(work_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    complete = [c for c in checkpoints if (c / "trainer_state.json").exists()] if same_run else []
    if main_process:
        shutil.rmtree(work_dir / "final", ignore_errors=True)
        for stale in set(checkpoints) - set(complete):
            log.warning("removing %s %s", "incomplete checkpoint" if same_run else "checkpoint of other settings",
                        stale)
            shutil.rmtree(stale, ignore_errors=True)
        if not same_run:
            write_text(run_file, json.dumps(run, sort_keys=True))
    return str(complete[-1]) if complete else None


def clear_work_dir(work_dir) -> None:
    """Delete what a finished run left in ``work_dir`` (checkpoints, settings, staging)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    work_dir = Path(work_dir)
    for path in [*work_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), work_dir / "final"]:
        shutil.rmtree(path, ignore_errors=True)
    (work_dir / RUN_FILE).unlink(missing_ok=True)


def _digest(blocks) -> str:
    h = hashlib.sha256()
    for block in blocks:
        h.update(json.dumps(block).encode())
    return h.hexdigest()


def train_causal_lm(base, texts, out_dir, loss_csv, *, block_size: int = 256, lr: float, epochs: int,
                    batch_size: int = 64, per_device_batch_size: int = 8, seed: int = 0, work_dir,
                    save_steps: int | None = None, warmup_ratio: float = 0.0, weight_decay: float = 0.0,
                    eval_texts=None) -> dict:
    """Continual pre-training of ``base`` (hub id or local dir) on ``texts``; save to ``out_dir``.

    Weights stay float32 (bf16 autocast on CUDA that supports it): bf16 weights would round away
    updates at learning rates of 1e-5. Checkpoints go to ``work_dir`` (every ``save_steps`` steps,
    else every epoch) and a rerun resumes from the newest one; they are deleted once ``out_dir`` is
    written. With ``eval_texts`` the packed-block loss on them is measured after every epoch.
    Returns {steps, epochs, final_loss, tokens (per epoch), blocks, eval_loss_per_epoch}.
    """
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    accumulation = gradient_accumulation(batch_size, per_device_batch_size, world_size)
    effective = accumulation * per_device_batch_size * world_size
    if effective != batch_size:
        log.warning("batch size %d requested; %d per device x %d processes x %d accumulation gives %d",
                    batch_size, per_device_batch_size, world_size, accumulation, effective)
    cuda = torch.cuda.is_available()
    saving = {"save_strategy": "steps", "save_steps": save_steps} if save_steps else {"save_strategy": "epoch"}
    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=epochs, learning_rate=lr, weight_decay=weight_decay,
        warmup_steps=warmup_ratio, per_device_train_batch_size=per_device_batch_size,
        per_device_eval_batch_size=per_device_batch_size, gradient_accumulation_steps=accumulation,
        seed=seed, data_seed=seed, use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
        logging_strategy="steps", logging_steps=1, eval_strategy="epoch" if eval_texts is not None else "no",
        save_total_limit=1, **saving, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=cuda, ddp_find_unused_parameters=False)
    tokenizer = load_tokenizer(base)
    blocks = tokenize_blocks(tokenizer, texts, block_size)
    eval_data = BlockDataset(tokenize_blocks(tokenizer, eval_texts, block_size)) if eval_texts is not None else None
    run = {"base": str(base), "lr": lr, "epochs": epochs, "batch_size": effective, "block_size": block_size,
           "seed": seed, "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "data": _digest(blocks)}
    with args.main_process_first(local=False, desc="checkpoint selection"):
        checkpoint = resume_checkpoint(work_dir, run, main_process=args.process_index == 0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    trainer = Trainer(model=model, args=args, train_dataset=BlockDataset(blocks), eval_dataset=eval_data,
                      data_collator=default_data_collator, processing_class=tokenizer,
                      callbacks=[_loss_callback(loss_csv)])
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    staging = work_dir / "final"
    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        with atomic_path(out_dir, directory=True) as tmp:
            for item in staging.iterdir():
                shutil.move(item, tmp / item.name)
        clear_work_dir(work_dir)
    history = trainer.state.log_history
    losses = loss_rows(history)
    summary = {"steps": trainer.state.global_step, "epochs": epochs,
               "final_loss": losses[-1]["loss"] if losses else None,
               "tokens": sum(map(len, blocks)), "blocks": len(blocks),
               "eval_loss_per_epoch": [e["eval_loss"] for e in history if "eval_loss" in e]}
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
    """{lr, epochs} chosen by the hyper-parameter search (kinject.hparams.choose)."""
    try:
        chosen = json.loads(Path(path).read_text())
        return {"lr": float(chosen["lr"]), "epochs": int(chosen["epochs"])}
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise KinjectError(path, f"not a chosen-hyper-parameters file ({exc})") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kinject.finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="hub id or local directory (from_pretrained)")
    p.add_argument("--train", required=True, help="parquet with a 'text' column")
    p.add_argument("--out", required=True, help="directory for the fine-tuned model")
    p.add_argument("--loss-csv", required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--hparams", help="chosen.json of the search: its lr and epochs override --lr/--epochs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--per-device-batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", required=True, help="checkpoints; a rerun resumes from them")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default: every epoch)")
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log_job_environment()
    try:
        hp = read_hparams(args.hparams) if args.hparams else {"lr": args.lr, "epochs": args.epochs}
        train_causal_lm(args.base, training_texts(args.train), args.out, args.loss_csv, block_size=args.block_size,
                        batch_size=args.batch_size, per_device_batch_size=args.per_device_batch_size,
                        seed=args.seed, work_dir=args.work_dir, save_steps=args.save_steps,
                        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, **hp)
    except KinjectError as err:
        print(f"kinject error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
