"""bench/gpu_check.py's fine-tuning step (``finetune_<model>``): rule finetune's own entry point, launched as the
rule launches it, on a random-init model of the real shape; peak memory, tokens/s and the fraction of the GPU's
bf16 peak beside kinject.planning.plan's estimate for exactly that job, flagged when more than 15% off."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from gpu_check_report import PEAK_BF16_TFLOPS

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # runs from a bare checkout (the device machine installs nothing of ours)
    sys.path.insert(0, str(ROOT / "src"))

HOOK = Path(__file__).resolve().parent / "gpu_check_hook"
PLAN_TOLERANCE = 0.15  # a plan figure more than this far from the measurement is flagged
# SmolLM2-135M-Instruct's config.json (the demo's model; tests/test_gpu_check.py checks these figures against
# the GGUF file the demo converts), in kinject.planning.shapes' shape keys
SMOLLM2_SHAPE = {"hidden_size": 576, "num_layers": 30, "num_heads": 9, "num_kv_heads": 3, "intermediate_size": 1536,
                 "vocab_size": 49152, "max_position_embeddings": 8192, "tied": True}
TINY_SHAPE = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 4, "intermediate_size": 192,
              "vocab_size": 1024, "max_position_embeddings": 1024, "tied": False}


def read_config(path: Path) -> tuple[dict, str]:
    """The config through kinject.settings.load_config (schema defaults, checks) where snakemake is installed;
    else the file as written (the device machine has no snakemake), which says so."""
    import yaml

    try:
        from kinject.settings import load_config

        return load_config(path), "validated (config/schema.yaml)"
    except ImportError as exc:
        return yaml.safe_load(path.read_text()), f"read without schema defaults ({exc.name} not installed)"


def model_shape(name: str, config: dict) -> dict:
    if name == "llama2-7b":
        given = config["models"]["llama2-7b"]["shape"]
        return {**{k: given[k] for k in TINY_SHAPE if k != "tied"}, "tied": False}
    return {"smollm2-135m": SMOLLM2_SHAPE, "tiny": TINY_SHAPE}[name]


def word_tokenizer(words: int = 1000):
    """A word-level tokenizer: each of ``words`` words is one token, BOS prepended, so a text of n words is
    exactly n + 1 tokens (+ EOS when packed): the training data gives exactly the blocks asked for."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate([*specials, *(f"w{i}" for i in range(words))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def build_random_model(shape: dict, out: Path, device: str) -> dict:
    """A random-init Llama of ``shape`` (from its config, on the GPU where there is one: seconds even for 7B),
    saved in bf16 with a word-level tokenizer. Returns its parameter count and the seconds taken."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    start = time.perf_counter()
    tokenizer = word_tokenizer(min(1000, shape["vocab_size"] - 3))
    cfg = LlamaConfig(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                      num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_heads"],
                      num_key_value_heads=shape["num_kv_heads"], intermediate_size=shape["intermediate_size"],
                      max_position_embeddings=shape["max_position_embeddings"], tie_word_embeddings=shape["tied"],
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"parameters": params, "build_s": time.perf_counter() - start}


def plan_estimate(name: str, shape: dict, settings: dict, config: dict, parameters: int) -> dict:
    """kinject plan's figures (kinject.planning.memory) for this one job: peak GB per GPU by part and tokens/s at plan.achievable_tflops."""
    from kinject.planning import memory as plan
    from kinject.planning.distribution import read_distribution
    from kinject.planning.shapes import SHAPE_KEYS, Shape, llama_parameters

    figures = {k: shape[k] for k in SHAPE_KEYS}
    params = llama_parameters(**figures, tied=shape["tied"])
    s = Shape(parameters=params, **figures, source=name)
    dist = read_distribution(ROOT / settings["accelerate_config"])
    plan_cfg = config.get("plan", {})
    memory = plan.training_memory(s, processes=1, dist=dist, precision=settings["precision"],
                                  micro_batch=settings["per_device_batch_size"], block_size=settings["block_size"],
                                  checkpointing=settings["gradient_checkpointing"],
                                  overhead_gb=plan_cfg.get("memory_overhead_gb", 4))
    tflops = plan_cfg.get("achievable_tflops", {}).get(settings["precision"], 100 if settings["precision"] == "bf16"
                                                       else 10)
    return {"parameters": params, "parameters_match": params == parameters, "strategy": dist.strategy,
            "memory_gb": {k: v / plan.GB for k, v in memory.items()}, "total_gb": sum(memory.values()) / plan.GB,
            "achievable_tflops": tflops,
            "tokens_per_s": tflops * 1e12 / plan.training_flops(params, 1, settings["gradient_checkpointing"])}


def compare(measured: float, planned: float) -> dict:
    """The plan against the measurement: how far off it is, relative to what was measured."""
    off = round(planned / measured - 1, 9)
    verdict = "ok" if abs(off) <= PLAN_TOLERANCE else f"PLAN OFF by {abs(off):.0%} ({'above' if off > 0 else 'below'})"
    return {"measured": measured, "plan": planned, "ratio": measured / planned, "plan_off": off, "verdict": verdict}


def run_finetune(scratch: Path, quick: bool, name: str) -> dict:
    """Rule finetune's launch (kinject.training.launch.launch) on a random-init model of ``name``'s shape, 1 GPU (the
    CPU and config/demo.yaml's settings for the tiny shape without CUDA), with the hook measuring inside."""
    import pandas as pd
    import torch

    from kinject.io import write_parquet
    from kinject.precision import resolve
    from kinject.training import launch

    cuda = torch.cuda.is_available()
    config_path = ROOT / ("config.yaml" if cuda else "config/demo.yaml")
    config, how = read_config(config_path)
    shape = model_shape(name, config)
    # precision resolved on the device the check measures (config.yaml's bf16; the demo's auto on a CPU): the
    # plan's estimate needs the dtype itself
    device = "cuda" if cuda else "cpu"
    settings = launch.rule_settings(config, "finetune")
    settings = {**launch.resolved({**settings, "precision": resolve(settings["precision"], device).name}, device),
                "lr": 1e-5, "epochs": 1}
    resources = launch.job_resources(config, "finetune")
    if cuda:
        resources["gpu"] = 1  # the plan's estimate and the measurement: the same one-GPU job
    threads = min(int(resources.get("cpus_per_task", 1)), os.cpu_count() or 1)
    steps = 3 if quick or not cuda else 5
    stop = name == "llama2-7b"  # measured through its last step, stopped before the Trainer's 81 GB checkpoint
    job = scratch / f"finetune-{name}"
    built = build_random_model(shape, job / "base", "cuda" if cuda else "cpu")
    block, batch = settings["block_size"], settings["batch_size"]
    words = block - 2  # + BOS + EOS: one text, one block
    texts = [" ".join(f"w{(i * 7 + j) % 1000}" for j in range(words)) for i in range(steps * batch)]
    write_parquet(job / "train.parquet", pd.DataFrame({"text": texts}))
    stats = job / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    path = [str(HOOK), str(ROOT / "src"), os.environ.get("PYTHONPATH")]  # the hook first: its sitecustomize
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    os.environ["KINJECT_GPU_CHECK_STATS"] = str(stats)
    if stop:
        os.environ["KINJECT_GPU_CHECK_STOP_AFTER"] = str(steps)
    files = {"base": str(job / "base"), "train": str(job / "train.parquet"), "hparams": None,
             "out": str(job / "out" / "checkpoint"), "loss_csv": str(job / "out" / "train_loss.csv"),
             "work_dir": str(job / "work")}
    command = launch.launch_command(settings, "finetune", files, resources, threads)
    start = time.perf_counter()
    summary = launch.launch("finetune", settings, files, resources, threads, log_path=None)
    wall = time.perf_counter() - start
    found = [json.loads(p.read_text()) for p in sorted(stats.glob("stats-*.json"))]
    if not found:
        raise RuntimeError("the trainer wrote no step statistics (bench/gpu_check_hook not loaded?)")
    trainer = found[0]
    times = trainer["steps"]
    tokens_per_step = batch * block
    result = {"model": name, "config": f"{config_path.relative_to(ROOT)} ({how})", "shape": shape,
              "parameters": built["parameters"], "build_s": built["build_s"], "launch": " ".join(command),
              "summary": summary, "wall_s": wall, "steps": len(times), "tokens_per_step": tokens_per_step,
              "startup_s": times[0] - trainer["start"] if times else None,
              "distributed_type": trainer.get("distributed_type"), "max_rss_gb": trainer["max_rss_bytes"] / 1e9,
              "stopped_before_checkpoint": stop,
              "settings": {k: settings[k] for k in ("precision", "block_size", "batch_size", "per_device_batch_size",
                                                     "gradient_checkpointing", "accelerate_config")},
              "processes": launch.process_count(resources)}
    if len(times) >= 2:
        step_s = (times[-1] - times[0]) / (len(times) - 1)  # the first step (warm-up) left out
        tps = tokens_per_step / step_s
        flops = 6 * built["parameters"] * tps
        result.update(step_s=step_s, tokens_per_s=tps, model_tflops=flops / 1e12)
        if cuda:
            result["fraction_of_bf16_peak"] = flops / (PEAK_BF16_TFLOPS * 1e12)
            if settings["gradient_checkpointing"]:
                result["fraction_of_bf16_peak_with_recompute"] = flops * 8 / 6 / (PEAK_BF16_TFLOPS * 1e12)
    if not cuda:
        result["plan"] = "skipped: kinject plan estimates GPU jobs"
        return result
    est = plan_estimate(name, shape, settings, config, built["parameters"])
    result["plan"] = est
    result["max_allocated_gb"] = trainer["max_allocated"] / 1e9
    result["max_reserved_gb"] = trainer["max_reserved"] / 1e9
    result["gpu_memory_gb"] = trainer["total_memory"] / 1e9
    result["comparison"] = {
        "peak GB per GPU (reserved vs plan total)": compare(result["max_reserved_gb"], est["total_gb"]),
        "peak GB per GPU (allocated vs plan without overhead)":
            compare(result["max_allocated_gb"], est["total_gb"] - est["memory_gb"]["overhead"])}
    if "tokens_per_s" in result:
        result["comparison"]["tokens/s"] = compare(result["tokens_per_s"], est["tokens_per_s"])
    if trainer.get("distributed_type") != "FSDP":
        result["reason"] = f"the trainer ran {trainer.get('distributed_type')}, not FSDP: the plan assumes FSDP"
    return result
