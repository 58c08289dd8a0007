"""bench/run.py's fine-tuning stage: packed against padded blocks, bf16 against fp32, and the launched training
process against the Trainer in the benchmark's own process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pandas as pd
from harness import Demo, MethodTimer, record, timed, torch_threads

# 4. fine-tuning ----------------------------------------------------------------------------------------

class PaddedDataset:
    """One wrapped chunk per row, unpadded; the collator pads each batch."""

    def __init__(self, docs):
        self.docs = docs

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, i):
        return {"input_ids": self.docs[i]}


def pad_collator(pad_id: int, width: int | None):
    """Pad a batch to its longest row (``width`` None) or to ``width``; pad positions get label -100."""
    import torch

    def collate(batch):
        size = width or max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), size), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), size), dtype=torch.long)
        for row, b in enumerate(batch):
            ids[row, :len(b["input_ids"])] = torch.tensor(b["input_ids"])
            mask[row, :len(b["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    return collate


def train_seconds(base, dataset, collator, work_dir: Path, *, lr: float, batch: int, seed: int, precision: str,
                  threads: int) -> float:
    """One epoch with transformers' Trainer, set up as kinject.training.finetune.train_causal_lm sets it up on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=1, learning_rate=lr, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, seed=seed, data_seed=seed, use_cpu=True, bf16=precision == "bf16",
        logging_strategy="steps", logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False)
    with torch_threads(threads):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        return timed(trainer.train)[0]


def training_set(demo: Demo, tmp: Path, n_texts: int) -> tuple[Path, list[str]]:
    """The first ``n_texts`` texts of the demo's largest current-events paraphrase set, as a parquet of its own."""
    from kinject.training.blocks import training_texts

    largest = max(demo.config["tasks"]["current_events"]["paraphrase_sets"])
    source = demo.results / "current_events" / "paraphrases" / f"paraphrases_k{largest}.parquet"
    subset = tmp / f"{source.stem}_first{n_texts}.parquet"
    pd.read_parquet(source).head(n_texts).to_parquet(subset, index=False)
    return subset, training_texts(subset)


def bench_finetune(demo: Demo, tmp: Path, n_texts: int) -> None:
    from transformers import Trainer, default_data_collator

    from kinject.precision import save_dtype
    from kinject.training.blocks import BlockDataset, load_tokenizer, tokenize_blocks
    from kinject.training.finetune import train_causal_lm

    ft, seed, precision = demo.config["finetune"], demo.config["seed"], demo.precision
    threads = demo.threads("finetune")
    train_file, texts = training_set(demo, tmp, n_texts)
    tok = load_tokenizer(demo.base)
    block, batch, lr = ft["block_size"], ft["per_device_batch_size"], ft["lr"]
    blocks = tokenize_blocks(tok, texts, block)
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    # the same wrapped chunks pack_blocks concatenates, one per row (cut at the block size)
    docs = [([bos] + ids if ids[:1] != [bos] else ids) for ids in tok(texts)["input_ids"]]
    docs = [(d + [tok.eos_token_id] if d[-1] != tok.eos_token_id else d)[:block] for d in docs]
    size = (f"{train_file.name}: {len(texts)} texts, {sum(map(len, docs)):,} tokens, batch {batch}, "
            f"{demo.model_name}, {threads} threads")
    setup = {"lr": lr, "batch": batch, "seed": seed, "threads": threads}

    packed_tokens = len(blocks) * block
    t_packed = train_seconds(demo.base, BlockDataset(blocks), default_data_collator, tmp / "ft_packed",
                             precision=precision, **setup)
    packed_rate = packed_tokens / t_packed
    for label, width in (("padded to the longest in the batch", None), (f"padded to {block}", block)):
        t = train_seconds(demo.base, PaddedDataset(docs), pad_collator(tok.pad_token_id, width), tmp / "ft_padded",
                          precision=precision, **setup)
        record("fine-tuning, Trainer", f"{size}, {precision}", f"one chunk per row, {label}", sum(map(len, docs)) / t,
               f"packed {block}-token blocks", packed_rate, "real tokens/s",
               f"one epoch; {len(blocks)} blocks vs {len(docs)} rows")

    rates = {}
    for p in ("fp32", "bf16"):
        timer = MethodTimer(Trainer, "train")  # the training loop itself (KinjectTrainer inherits it)
        with timer.patched():
            summary = train_causal_lm(demo.base, texts, None, tmp / f"ft_{p}" / "loss.csv", block_size=block, lr=lr,
                                      epochs=1, batch_size=ft["batch_size"], per_device_batch_size=batch, seed=seed,
                                      work_dir=tmp / f"ft_{p}" / "work", save_steps=10**6, precision=p,
                                      threads=threads)
        rates[p] = (summary["tokens"] / timer.seconds, summary["final_loss"])
    record("fine-tuning, precision", size, "fp32", rates["fp32"][0], "bf16 (autocast over fp32 weights)",
           rates["bf16"][0], "real tokens/s",
           f"finetune.train_causal_lm, one epoch, the training loop timed (no checkpoint); final loss "
           f"{rates['fp32'][1]:.3f} vs {rates['bf16'][1]:.3f}; bare Trainer, packed, {precision}: {packed_rate:,.0f}")

    t_job = launch_finetune(demo, tmp / "ft_launch", train_file, threads)
    record("fine-tuning, the stage", f"{size}, {precision}", f"bare Trainer, packed, {precision}", packed_rate,
           "rule finetune's accelerate launch", packed_tokens / t_job, "real tokens/s",
           f"end to end: process start, imports, model load, {launched_how(demo)}, epoch checkpoint, save in "
           f"{save_dtype(ft.get('save_dtype'), precision)} ({t_job:.1f} s vs {t_packed:.1f} s of training)")


def launched_how(demo: Demo) -> str:
    from kinject.training.launch import job_resources, process_count, read_accelerate_config

    launch = read_accelerate_config(demo.repo / demo.config["finetune"]["accelerate_config"])
    return f"{launch['distributed_type']} on {process_count(job_resources(demo.config, 'finetune'))} process(es)"


def launch_finetune(demo: Demo, work: Path, train_file: Path, threads: int) -> float:
    """Seconds of the command rule finetune runs (kinject.training.launch.launch_command) on ``train_file``."""
    from kinject.training.launch import job_resources, launch_command, resolved, rule_settings

    settings = rule_settings(demo.config, "finetune", demo.config["tasks"]["current_events"])
    settings["accelerate_config"] = str(demo.repo / settings["accelerate_config"])
    settings = resolved(settings, "cpu")
    files = {"base": str(demo.base), "train": str(train_file), "hparams": None, "out": str(work / "checkpoint"),
             "loss_csv": str(work / "train_loss.csv"), "work_dir": str(work / "work")}
    argv = launch_command(settings, "finetune", files, job_resources(demo.config, "finetune"), threads)
    env = {**os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), str(threads))}
    work.mkdir(parents=True)
    with open(work / "launch.log", "w") as log:
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{(work / 'launch.log').read_text()[-3000:]}")
    return seconds
