"""``kinject plan``'s readable tables: the plan (``kinject.planning.plan.make_plan``) as text."""

from __future__ import annotations

from kinject.planning.plan import total


def fmt(value, spec: str = ".1f") -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return format(value, spec)


def table(header: list[str], rows: list[list], left: int = 1) -> list[str]:
    """Aligned columns: the first `left` and a 'source' or 'job' column to the left, figures to the right."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  " + "  ".join(c.ljust(w) if i < left or header[i] in ("source", "job") else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths)))

    return [line(header).rstrip(), *(line(r).rstrip() for r in rows)]


def short(n) -> str:
    """6738415616 -> 6.74 B; 1234567 -> 1.23 M."""
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


PARTS = [("weights", "weights"), ("gradients", "grads"), ("optimizer", "AdamW"), ("gathered", "gathered"),
         ("layer_grads", "layer grads"), ("activations", "activ."), ("kv_cache", "KV cache"),
         ("working_set", "working set"), ("logits", "logits"), ("overhead", "overhead")]


def format_plan(plan: dict, source: str = "") -> str:
    """The plan as the readable tables ``kinject plan`` prints."""
    tr, out = plan["training"], []
    out += [f"kinject plan {source}".rstrip(),
            "Estimates, GB = 10^9 bytes; inputs: models.<m>.shape, artifacts under results/ where they exist, plan: "
            "in the config.",
            f"Training: {tr['distribution']} over each job's GPUs ({tr['accelerate_config']}), {plan['precision']}"
            + (" mixed precision over fp32 master weights" if plan["precision"] == "bf16" else "")
            + f", gradient checkpointing {'on' if tr['gradient_checkpointing'] else 'off'}, micro-batch "
            f"{tr['micro_batch']} x {tr['block_size']} tokens, AdamW; checkpoints saved in {tr['save_dtype']}.",
            f"GPU: {plan['gpu_memory_gb']:g} GB, {plan['achievable_tflops']:g} TFLOP/s sustained in "
            f"{plan['precision']} (plan.achievable_tflops).", ""]
    out.append("Models")
    rows = [[m, short(s.get("parameters")), s.get("num_layers", "?"), s.get("hidden_size", "?"),
             f"{s.get('num_heads', '?')}/{s.get('num_kv_heads', '?')}", s.get("intermediate_size", "?"),
             s.get("vocab_size", "?"), s["source"]] for m, s in plan["models"].items()]
    out += table(["model", "parameters", "layers", "hidden", "heads/kv", "ffn", "vocab", "source"], rows) + [""]
    out.append("Corpus (tokens = characters / plan.chars_per_token)")
    rows = []
    for task, c in plan["corpus"].items():
        f, src = c["figures"], c["sources"]
        rows.append([task, fmt(f["chunks"], ".0f"), fmt(f["tokens_per_chunk"], ".0f"), fmt(f["questions"], ".0f"),
                     fmt(f["question_tokens"], ".0f"),
                     ", ".join(sorted({"plan.corpus (estimate)" if src.get(k, "").startswith("plan.corpus") else
                                       src.get(k, "unknown") for k in ("chunks", "questions")}))])
    out += table(["task", "chunks", "tokens/chunk", "questions", "tokens/question", "source"], rows) + [""]
    groups: dict[tuple, list] = {}  # training and evaluation rows have different parts
    for m in plan["memory"]:
        groups.setdefault(tuple(m["parts_gb"]), []).append(m)
    for keys, rows_of in groups.items():
        kind = "training" if "optimizer" in keys else "evaluation"
        out.append(f"Peak memory per GPU, GB, {kind} (largest job of each rule and model; fits: <= "
                   f"{plan['gpu_memory_gb']:g} GB)")
        names = [name for key, name in PARTS if key in keys]
        prompt = kind == "evaluation"
        rows = [[m["rule"], m["model"], m["gpus"] or "CPU",
                 *(fmt(m["parts_gb"][key], ".2f") for key, _ in PARTS if key in keys), fmt(m["total_gb"], ".1f"),
                 "-" if m["fits"] is None else fmt(m["fits"]), *([m["longest_prompt"]] if prompt else []),
                 m["job"].removeprefix(m["model"]).strip()] for m in rows_of]
        out += table(["rule", "model", "GPUs", *names, "total", "fits", *(["prompt"] if prompt else []), "job"], rows,
                     left=2)
        out += ([f"  prompt: tokens of the longest request, x evaluation.batch_size {plan['eval_batch_size']} "
                 "in a batch"] if prompt else []) + [""]
    out.append("Per rule (GPU-h: GPUs x wall time, all jobs; runtime and mem_mb: set in resources / wanted = "
               "estimate x plan.margin)")
    rows = []
    for rule, r in plan["rules"].items():
        if "gpus" not in r:
            rows.append([rule, r["jobs"], "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append([rule, r["jobs"], r["gpus"] or "CPU", fmt(r.get("peak_gb_per_gpu")), fmt(r.get("gpu_hours")),
                     fmt(r.get("wall_minutes_max"), ".0f"), f"{r['runtime']}/{fmt(r.get('runtime_needed'), 'd')}",
                     fmt(r.get("host_gb_max")), f"{r['mem_mb']}/{fmt(r.get('mem_mb_needed'), 'd')}",
                     fmt(r.get("disk_kept_gb"))])
    out += table(["rule", "jobs", "GPUs", "GB/GPU", "GPU-h", "job min", "runtime", "host GB", "mem_mb", "disk GB"],
                 rows)
    gpu_h = total(r["gpu_hours"] for r in plan["rules"].values() if r.get("gpu_hours") is not None or "gpu_hours" in r)
    out += [f"  total GPU-hours: {fmt(gpu_h, '.0f')}", ""]
    llm = plan["llm"]
    price = llm["prices"]
    out.append(f"LLM calls ({llm['model']}" + (f": USD {price['input']:g} / {price['output']:g} per 10^6 input / "
                                              "output tokens)" if price else ": no price in plan.llm_prices)"))
    rows = [[r["rule"], r["task"], fmt(r["calls"], ".0f"), short(r["input_tokens"]), short(r["output_tokens"]),
             fmt(r["usd"], ".0f"), short(r["worst_output_tokens"]), fmt(r["worst_usd"], ".0f")] for r in llm["rules"]]
    rows.append(["total", "", fmt(llm["calls"], ".0f"), short(llm["input_tokens"]), short(llm["output_tokens"]),
                 fmt(llm["usd"], ".0f"), short(llm["worst_output_tokens"]), fmt(llm["worst_usd"], ".0f")])
    out += table(["rule", "task", "calls", "input tokens", "output tokens", "USD", "worst output", "worst USD"], rows,
                 left=2)
    out += ["  worst: every reply as long as its max_tokens (llm.max_tokens), every call asked 1 + "
            "llm.invalid_retries times", ""]
    out.append("Power: the smallest accuracy difference each comparison family detects, 80% power, two-sided "
               "(docs/statistics.md)")
    rows = [[r["task"], r["family"], r["comparisons"], fmt(r["questions"], ".0f"), fmt(r["clusters"], ".0f"),
             "-" if r["seeds"] is None else r["seeds"], fmt(r["mdd_lenient"], ".3f"), fmt(r["alpha"], ".2g"),
             fmt(r["mdd_questions"], ".3f"), fmt(r["mdd_clusters"], ".3f"),
             "-" if r["paper_effect"] is None else fmt(r["paper_effect"], ".3f")] for r in plan["power"]]
    out += table(["task", "family", "comparisons", "questions", "clusters", "seeds", "MDD at q", "q/m", "MDD at q/m",
                  "clustered", "paper"], rows, left=2)
    seed_sd = plan["power"][0]["seed_sd"] if plan["power"] else None
    out += ["  q = 0.05, the comparisons' BH level; q/m: BH's first step over the grid's m comparisons; MDD: questions "
            "as independent units; clustered: a cluster (a chunk's questions) as the unit; paper: its smallest "
            "difference of the family (resources/paper_effects.yaml)",
            "  seeds: the training seeds a comparison is averaged over (- where neither side is trained); each "
            f"trained side adds a seed effect of SD plan.seed_sd {fmt(seed_sd, 'g')} / sqrt(seeds) to every MDD (0: "
            "the questions only)"]
    out += [f"  UNDERPOWERED {w}" for w in plan["power_warnings"]] + [""]
    disk = plan["disk"]
    out += ["Disk", f"  fine-tuned checkpoints ({tr['save_dtype']}): {fmt(disk['checkpoints_gb'], '.0f')} GB; "
            f"FAISS indexes: {fmt(disk['indexes_gb'], '.1f')} GB; hub models (fp16 safetensors in results/hub/models): "
            f"{fmt(disk['hub_models_gb'], '.0f')} GB",
            f"  while it runs, each hparam_trial / finetune job keeps up to {fmt(disk['training_work_gb_per_job'], '.0f')}"
            " GB under results/.work: Trainer checkpoints (weights + AdamW state, 12 B/parameter, two at a time) and"
            " a trial's epoch models", ""]
    unknown = sorted({n for r in plan["rules"].values() for n in r.get("notes", [])}
                     | {n for r in llm["rules"] for n in r["notes"]} | set(plan["notes"])
                     | {m["source"] for m in plan["models"].values() if "parameters" not in m})
    if unknown:
        out += ["Unknown (shown as ?)", *(f"  {n}" for n in unknown), ""]
    if plan["warnings"]:
        out += ["WARNINGS", *(f"  {w}" for w in plan["warnings"])]
    elif unknown:
        out.append("No warnings about the figures that are known; the unknown ones (?) are not checked.")
    else:
        out.append(f"No warnings: every GPU job fits its {plan['gpu_memory_gb']:g} GB GPUs and the resources asked "
                   "for cover the estimates with their margins.")
    return "\n".join(out) + "\n"
