"""``kinject plan``: what a config will take before anything runs, per rule.

Jobs per rule (Snakemake's own DAG of ``snakemake all``: ``kinject.planning.dag``), GPUs per job
(``resources``), peak memory per GPU of the training and evaluation jobs, GPU-hours, host memory and runtime
per job (to compare with the SLURM ``mem_mb`` / ``runtime`` the config asks for), disk for checkpoints and
FAISS indexes, and the LLM calls, tokens and cost of question and paraphrase generation. Every figure is an
estimate (``kinject.planning.jobs``: one estimator per rule, with the formulas of ``kinject.planning.memory``)
from the inputs named in ``plan:`` of the config; GB = 10^9 bytes.

Model figures come from ``models.<m>.shape`` or a local model folder's ``config.json``; corpus sizes from
the artifacts once they exist (``results/{task}/chunks.parquet``, ``questions.parquet``, the paraphrase
and validation sets), else from ``plan.corpus``. A figure nobody gave is reported unknown, with the key
that provides it. Nothing here imports torch or reaches the network. ``kinject.planning.render`` prints it.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from kinject.planning.dag import job_counts
from kinject.planning.jobs import RESOURCE_KEY, TRAINING_RULES, Job, Planner, job_resources, processes
from kinject.planning.llm_cost import llm_usage, synthetic_warnings
from kinject.planning.memory import GB, MIB
from kinject.planning.power import power_rows

HUB_BYTES = 2  # hub checkpoints of the 7B models are fp16/bf16 safetensors


def total(values):
    """Sum, or None when any term is unknown."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def most(values):
    """Max, or None when any term is unknown."""
    values = list(values)
    return None if any(v is None for v in values) else max(values, default=0)


def per_gb(value):
    return None if value is None else value / GB


def summarize(rule: str, jobs: list[Job], config: dict, warnings: list[str]) -> dict:
    """One rule's figures over its jobs: the largest per-job peak, host memory, wall time and work disk;
    the sums of GPU-hours and kept disk; what the plan wants for mem_mb / runtime (estimate x margin)."""
    plan, res = config["plan"], job_resources(config, rule)
    margin, key = plan["margin"], f"resources.{RESOURCE_KEY[rule]}"
    peak = most(j.peak_bytes for j in jobs)
    host = most(j.host_bytes for j in jobs)
    wall = most(j.wall_minutes for j in jobs) if res.get("gpu", 0) else None
    largest = max(jobs, key=lambda j: j.peak_bytes or 0)
    entry = {
        "peak_gb_per_gpu": per_gb(peak),
        "memory_gb": {part: v / GB for part, v in (largest.memory or {}).items()},
        "largest_job": largest.label,
        "gpu_hours": total(j.gpu_hours for j in jobs) if res.get("gpu", 0) else None,
        "compute_gpu_hours": total(None if j.compute_gpu_hours is None else j.count * j.compute_gpu_hours for j in jobs),
        "wall_minutes_max": wall,
        "host_gb_max": per_gb(host),
        "disk_kept_gb": per_gb(total(None if j.kept_bytes is None else j.count * j.kept_bytes for j in jobs)),
        "work_gb_per_job": per_gb(most(j.work_bytes for j in jobs)),
        "notes": sorted({note for j in jobs for note in j.notes if "unknown" in note}),
    }
    if host is not None:
        entry["mem_mb_needed"] = math.ceil(host * margin["mem"] / MIB)
        if res.get("mem_mb", 0) < entry["mem_mb_needed"]:
            warnings.append(f"{rule}: {key}.mem_mb {res.get('mem_mb')} is below the plan's {entry['mem_mb_needed']} "
                            f"(host peak {host / GB:.1f} GB x margin {margin['mem']:g})")
    if wall is not None:
        entry["runtime_needed"] = math.ceil(wall * margin["runtime"])
        if res.get("runtime", 0) < entry["runtime_needed"]:
            warnings.append(f"{rule}: {key}.runtime {res.get('runtime')} min is below the plan's "
                            f"{entry['runtime_needed']} (longest job {wall:.0f} min x margin {margin['runtime']:g})")
    if res.get("gpu", 0):
        too_big = [j for j in jobs if j.peak_bytes is not None and j.peak_bytes > plan["gpu_memory_gb"] * GB]
        for j in too_big[:1]:
            warnings.append(f"{rule} {j.label}{f' (and {len(too_big) - 1} more)' if len(too_big) > 1 else ''}: needs "
                            f"~{j.peak_bytes / GB:.1f} GB per GPU, more than the {plan['gpu_memory_gb']:g} GB GPUs it "
                            "asks for (plan.gpu_memory_gb)")
    return entry


def make_plan(config: dict, root: Path | str = ".", dag: list[dict] | None = None) -> dict:
    """Everything ``kinject plan`` reports, as plain data (``--json`` prints it). Artifacts, local model
    folders and the accelerate config are looked up under ``root`` (where Snakemake runs). ``dag``: the jobs
    of ``snakemake all`` (``kinject.planning.dag.dag_jobs``), when the caller has them already."""
    root = Path(root)
    planner = Planner(config, root, dag)
    plan, warnings = config["plan"], planner.warnings
    jobs = planner.jobs()
    rules = {}
    for rule, n in job_counts(planner.dag).items():
        entry = {"jobs": n}
        if rule in RESOURCE_KEY:
            res = job_resources(config, rule)
            entry.update(gpus=res.get("gpu", 0), processes=processes(res), resources=f"resources.{RESOURCE_KEY[rule]}",
                         mem_mb=res.get("mem_mb"), runtime=res.get("runtime"))
        mine = [j for j in jobs if j.rule == rule]
        if mine:
            entry.update(summarize(rule, mine, config, warnings))
        rules[rule] = entry
    memory = []
    for rule in RESOURCE_KEY:
        for model in config["models"]:
            mine = [j for j in jobs if j.rule == rule and j.model == model and j.memory is not None]
            if mine:
                largest = max(mine, key=lambda j: j.peak_bytes)
                memory.append({"rule": rule, "model": model, "gpus": largest.gpus, "job": largest.label,
                               "parts_gb": {part: v / GB for part, v in largest.memory.items()},
                               "total_gb": largest.peak_bytes / GB, "longest_prompt": largest.prompt_tokens,
                               "fits": largest.peak_bytes <= plan["gpu_memory_gb"] * GB if largest.gpus else None})
    llm = llm_usage(config, planner.corpora)
    warnings += synthetic_warnings(config, llm)
    model = config["llm"]["model"]
    price = plan.get("llm_prices", {}).get(model)
    if price is None and llm:
        planner.notes.append(f"LLM cost unknown: set plan.llm_prices.{model} (USD per 10^6 input and output tokens)")
    hub = [m for m, cfg in config["models"].items() if "pretrained" in cfg and not (root / cfg["pretrained"]).exists()]
    power, power_warnings = power_rows(config, planner.corpora)
    shapes = planner.shapes
    return {
        "gpu_memory_gb": plan["gpu_memory_gb"],
        "precision": planner.precision,
        "eval_batch_size": config["evaluation"]["batch_size"],
        "achievable_tflops": plan["achievable_tflops"][planner.precision],
        "training": {"distribution": planner.dist.words, "accelerate_config": planner.dist.source,
                     "gradient_checkpointing": planner.checkpointing,
                     "micro_batch": config["finetune"]["per_device_batch_size"],
                     "block_size": config["finetune"]["block_size"], "save_dtype": planner.save_dtype,
                     "offload": planner.dist.offload, "efficient_loading": planner.dist.efficient_loading},
        "models": {m: ({**asdict(s), "root_parameters": s.root_parameters, "layer_parameters": s.layer_parameters}
                       if s else {"source": why}) for m, (s, why) in shapes.items()},
        "corpus": {t: {"figures": c.figures, "sources": c.sources} for t, c in planner.corpora.items()},
        "rules": rules,
        "memory": memory,
        "jobs": [{"rule": j.rule, "job": j.label, "count": j.count, "gpus": j.gpus,
                  "peak_gb_per_gpu": per_gb(j.peak_bytes), "host_gb": per_gb(j.host_bytes),
                  "compute_gpu_hours": j.compute_gpu_hours, "wall_minutes": j.wall_minutes, "gpu_hours": j.gpu_hours,
                  "longest_prompt": j.prompt_tokens, "notes": j.notes} for j in jobs],
        # fine-tuned checkpoints (and adapters): the finetune jobs' and, per searched (model, task) with set 0,
        # the chosen trial's
        "disk": {"checkpoints_gb": total([*(rules.get(r, {}).get("disk_kept_gb") for r in TRAINING_RULES
                                            if r in rules and r.startswith("finetune")),
                                          *(per_gb(j.adopted_bytes) for j in jobs if j.rule.startswith("hparam_trial"))]),
                 "training_work_gb_per_job": most(rules[r].get("work_gb_per_job") for r in rules if r in TRAINING_RULES),
                 "indexes_gb": rules.get("index_chunks", {}).get("disk_kept_gb"),
                 "hub_models_gb": total(per_gb(HUB_BYTES * shapes[m][0].parameters) if shapes[m][0] else None
                                        for m in hub)},
        "llm": {"model": model, "prices": price, "rules": llm,
                "calls": total(r["calls"] for r in llm), "input_tokens": total(r["input_tokens"] for r in llm),
                "output_tokens": total(r["output_tokens"] for r in llm), "usd": total(r["usd"] for r in llm),
                "worst_output_tokens": total(r["worst_output_tokens"] for r in llm),
                "worst_usd": total(r["worst_usd"] for r in llm)},
        "power": power,
        "power_warnings": power_warnings,  # the differences the grid may not detect (not resource warnings)
        "notes": planner.notes,
        "warnings": warnings,
    }
