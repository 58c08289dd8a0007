"""The jobs ``kinject plan`` estimates: every job of Snakemake's own DAG of ``snakemake all``
(``kinject.planning.dag``), each estimated by its rule's estimator (``Planner.estimator``): GPUs, peak memory
per GPU, host memory, GPU-hours and disk of the training, evaluation, control and retrieval jobs. Which jobs
exist is the workflow's answer, not re-derived here; a rule without an estimator (no GPU, or an LLM rule, which
``kinject.planning.llm_cost`` prices) is counted, not estimated."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kinject import settings
from kinject.evaluation.retrievers import RAG_RETRIEVER, RETRIEVERS
from kinject.grid import evaluation_cells, formats, retriever_rule
from kinject.paths import results_root
from kinject.planning.corpus import eval_requests, missing, task_corpus, training_tokens, validation_tokens
from kinject.planning.dag import dag_jobs
from kinject.planning.distribution import Distribution, read_distribution
from kinject.planning.memory import (
    BYTES,
    GB,
    MASTER,
    TRAINER_CHECKPOINT,
    eval_memory,
    training_flops,
    training_host_memory,
    training_memory,
)
from kinject.planning.shapes import Shape, model_shape
from kinject.precision import AUTO, save_dtype
from kinject.training.methods import METHODS
from kinject.training.seeds import untag

# The resources entry each GPU rule reads (rules/*.smk: compute_resources(<key>); a test keeps them equal).
# Each fine-tuning method's rules read the resources entry of their stage.
RESOURCE_KEY = {"build_base_model": "gpu_rules", "index_chunks": "gpu_rules", "retrieve": "gpu_rules",
                "evaluate_base": "evaluate", "evaluate_controls_base": "evaluate",
                **{m.rule(stage): key for m in METHODS.values()
                   for stage, key in (("hparam_trial", "hparam_trial"), ("finetune", "finetune"), ("evaluate", "evaluate"),
                                      ("evaluate_rag", "evaluate"), ("evaluate_controls", "evaluate"))
                   if stage in m.stages},
                # another retriever's evaluation jobs (kinject.grid.evaluation_cells), and the reranker's
                **{retriever_rule(rule, r): "evaluate" for r in RETRIEVERS if r != RAG_RETRIEVER
                   for rule in ["evaluate_rag"] + [m.rule("evaluate_rag") for m in METHODS.values() if m.rag]},
                **{f"retrieve_{r.name}": "gpu_rules" for r in RETRIEVERS.values() if r.reranks}}
CONTROL_RULES = {"base": "evaluate_controls_base",
                 **{m.name: m.rule("evaluate_controls") for m in METHODS.values() if "evaluate_controls" in m.stages}}
TRAINING_RULES = {m.rule(stage): m for m in METHODS.values() for stage in ("hparam_trial", "finetune")
                  if stage in m.stages}
EMBED_RULES = ("index_chunks", "retrieve")
SAME_ESTIMATE = ("lr",)  # wildcards an estimate does not depend on: a search's trials are one Job with a count


def job_resources(config: dict, rule: str) -> dict:
    """resources.gpu_rules overridden by the rule's own entry (what common.smk's compute_resources gives)."""
    return settings.job_resources(config, RESOURCE_KEY[rule])


def processes(res: dict) -> int:
    """Processes of a job: one per GPU, or resources.<rule>.processes on CPU."""
    return res["gpu"] if res.get("gpu", 0) > 0 else res.get("processes", 1)


@dataclass
class Job:
    """One rule's job (or identical jobs: `count`), with every figure the plan reports; None = unknown."""
    rule: str
    label: str
    model: str | None = None
    count: int = 1
    gpus: int = 0
    memory: dict | None = None  # bytes per GPU by part
    host_bytes: float | None = None
    compute_gpu_hours: float | None = None  # FLOPs / achievable FLOP/s, per job
    fixed_minutes: float = 0.0  # start-up and checkpoint writes, per job
    kept_bytes: float | None = 0.0  # disk a job leaves, per job
    work_bytes: float | None = 0.0  # transient disk while a job runs
    adopted_bytes: float | None = 0.0  # a (model, task)'s trials: the chosen model, set 0's checkpoint
    prompt_tokens: int | None = None  # evaluation: the longest request
    notes: list = field(default_factory=list)

    @property
    def peak_bytes(self):
        return sum(self.memory.values()) if self.memory is not None else None

    @property
    def wall_minutes(self):
        if self.compute_gpu_hours is None or self.gpus == 0:
            return None
        return self.fixed_minutes + self.compute_gpu_hours * 60 / self.gpus

    @property
    def gpu_hours(self):
        """What the allocation costs: wall time x GPUs, for all `count` jobs."""
        return None if self.wall_minutes is None else self.count * self.gpus * self.wall_minutes / 60


def planned_precision(config: dict) -> str:
    """The precision the plan assumes: the config's, with auto as bf16 (the GPUs kinject plan plans for)."""
    return "bf16" if config["precision"] == AUTO else config["precision"]


class Planner:
    """Estimates of the jobs of ``dag`` (Snakemake's jobs of ``snakemake all``: {"rule", "wildcards"} each; by
    default built for ``config`` with the Snakefile under ``root``), one estimator per rule."""

    def __init__(self, config: dict, root: Path, dag: list[dict] | None = None):
        self.config, self.root = config, Path(root)
        self.plan = config["plan"]
        self.precision = planned_precision(config)
        ft = config["finetune"]
        self.save_dtype = save_dtype(ft.get("save_dtype"), self.precision)
        self.dist = (read_distribution(self.root / ft["accelerate_config"]) if "accelerate_config" in ft
                     else Distribution("DDP", None))
        self.checkpointing = ft["gradient_checkpointing"]
        self.shapes = {m: model_shape(m, cfg, self.root, results_root(config)) for m, cfg in config["models"].items()}
        self.corpora = {t: task_corpus(config, t, self.root) for t in config["tasks"]}
        for c in config["evaluation"]["controls"]:  # question sets only: no knowledge base, no chunks
            corpus = self.corpora[f"controls/{c}"] = task_corpus(config, f"controls/{c}", self.root)
            corpus.figures.update(chunks=None, tokens_per_chunk=None, max_chunk_tokens=None)
        self.notes: list[str] = []
        self.warnings: list[str] = []
        if config["precision"] == AUTO:
            self.notes.append("precision auto: planned as bf16, what it resolves to on a GPU with bf16 (a GPU "
                              "without it, or a CPU without native bf16, runs fp32: kinject.precision)")
        self.dag = dag_jobs(config, root) if dag is None else dag

    def flops_per_s(self) -> float:
        return self.plan["achievable_tflops"][self.precision] * 1e12

    def shape(self, model: str, job: Job) -> Shape | None:
        shape, source = self.shapes[model]
        if shape is None:
            job.notes.append(source)
        return shape

    # training ------------------------------------------------------------------------------------------
    def training_job(self, rule: str, at: dict, count: int) -> Job:
        """A search's trial (its learning rate aside: ``count`` trials) or a fine-tuning run of paraphrase set k (an
        extra training seed's run, k tagged 10_s7: kinject.training.seeds, is set k's run again)."""
        method = TRAINING_RULES[rule]
        # a search's trial trains its method's search set (set 0; synthetic CPT's smallest budget)
        model, task, k = at["model"], at["task"], untag(at.get("k", method.search_set(self.config)))[0]
        res = job_resources(self.config, rule)
        n = processes(res)
        ft, plan = self.config["finetune"], self.plan
        job = Job(rule, f"{model} {task} k{at.get('k', 0)}" if rule.startswith("finetune") else f"{model} {task}", model,
                  count=count, gpus=res.get("gpu", 0))
        shape = self.shape(model, job)
        tokens = (method.tokens or training_tokens)(self.config, task, self.corpora[task], self.root, k)
        if tokens is None:
            job.notes += missing(self.corpora[task], task, ("chunks", "tokens_per_chunk"))
        if shape is None:
            job.host_bytes = job.compute_gpu_hours = job.kept_bytes = job.work_bytes = job.adopted_bytes = None
            return job
        trainable = method.trainable(self.config, shape) if method.trainable else None
        job.memory = training_memory(shape, processes=n, dist=self.dist, precision=self.precision,
                                     micro_batch=ft["per_device_batch_size"], block_size=ft["block_size"],
                                     checkpointing=self.checkpointing, overhead_gb=plan["memory_overhead_gb"],
                                     trainable=trainable)
        job.host_bytes = training_host_memory(shape, processes=n, dist=self.dist, save_dtype=self.save_dtype,
                                              process_gb=plan["process_host_gb"])
        task_cfg = self.config["tasks"][task]
        trial = rule.startswith("hparam_trial")
        searched = trial or "validation" in task_cfg
        epochs = ft["search"]["max_epochs"] if searched else ft["epochs"]
        flops = None if tokens is None else training_flops(shape.parameters, tokens * epochs, self.checkpointing,
                                                            not method.whole_model)
        if trial:
            val = validation_tokens(self.config, task, self.corpora[task], self.root)
            flops = None if flops is None or val is None else flops + 2 * shape.parameters * val * epochs
        job.compute_gpu_hours = None if flops is None else flops / self.flops_per_s() / 3600
        saved = shape.parameters if trainable is None else trainable  # an adapter run saves its adapter only
        final = BYTES[self.save_dtype] * saved
        written = epochs * TRAINER_CHECKPOINT * saved + (epochs if trial else 1) * final
        job.fixed_minutes = plan["startup_minutes"] + written / (plan["write_gb_per_s"] * GB) / 60
        # a trial's best epoch's model stays only until validated_model hard-links the chosen one as set 0's
        # checkpoint (Snakemake then deletes the trials' models: temp); make_plan counts that checkpoint
        job.kept_bytes = 0 if trial else final
        if trial:
            searched_set = method.search_set(self.config)  # the search's trial model becomes that set's model
            job.adopted_bytes = final if searched_set in method.trained_sets(self.config, task_cfg) else 0
        # the Trainer writes the next checkpoint before deleting the previous one (save_total_limit=1);
        # a trial's epoch models stay in its work directory until it ends
        job.work_bytes = 2 * TRAINER_CHECKPOINT * saved + (epochs * final if trial else 0)
        return job

    # evaluation ----------------------------------------------------------------------------------------
    def eval_job(self, rule: str, at: dict, count: int = 1) -> Job:
        """One checkpoint (the base model: at has no p) at one shot count and format, scoring every cell of its rule."""
        model, task, shots = at["model"], at["task"], int(at["shots"])
        label = f"{model} {task} {shots}-shot" + (f" p{at['p']}" if "p" in at else "")
        runs = [evaluate_k for _, evaluate_k in evaluation_cells(self.config)[rule]]
        return self.scoring_job(rule, model, label, [(task, self.corpora[task], shots, k) for k in runs], count)

    def control_job(self, rule: str, at: dict, count: int = 1) -> Job:
        """One job scoring every control (0-shot, K = 0) on a base model or a fine-tuned checkpoint."""
        method = next(name for name, control_rule in CONTROL_RULES.items() if control_rule == rule)
        model = at["model"]
        label = f"{model} " + ("base" if method == "base" else f"{at['task']} {method} p{at['p']}")
        return self.scoring_job(rule, model, label,
                                [(f"controls/{c}", self.corpora[f"controls/{c}"], 0, 0)
                                 for c in self.config["evaluation"]["controls"]], count)

    def scoring_job(self, rule: str, model: str, label: str, runs: list, count: int = 1) -> Job:
        """An evaluation job: one model load scoring each of ``runs`` ((name, corpus, shots, K) per lm-eval task)."""
        res = job_resources(self.config, rule)
        job = Job(rule, label, model, count=count, gpus=res.get("gpu", 0), kept_bytes=0, work_bytes=0)
        shape = self.shape(model, job)
        figures = [eval_requests(self.config, corpus, shots, k) for _, corpus, shots, k in runs]
        if shape is None or any(tokens is None for tokens, _ in figures):
            for name, corpus, _, k in runs:
                job.notes += missing(corpus, name, ("questions", "question_tokens", "max_question_tokens",
                                                    "answer_tokens") + (("tokens_per_chunk", "max_chunk_tokens") if k else ()))
            job.notes = list(dict.fromkeys(job.notes))
            job.host_bytes = job.compute_gpu_hours = None
            return job
        longest = max(long for _, long in figures)
        if longest > shape.max_position_embeddings:
            self.warnings.append(f"{rule} {label}: the longest prompt (~{longest} tokens) exceeds "
                                 f"{model}'s {shape.max_position_embeddings} positions; lm-eval truncates it")
            longest = shape.max_position_embeddings
        c = BYTES[self.precision]
        job.memory = eval_memory(shape, precision=self.precision, batch_size=self.config["evaluation"]["batch_size"],
                                 tokens=longest, overhead_gb=self.plan["memory_overhead_gb"])
        job.host_bytes = c * shape.parameters + self.plan["process_host_gb"] * GB
        job.compute_gpu_hours = 2 * shape.parameters * sum(t for t, _ in figures) / self.flops_per_s() / 3600
        job.fixed_minutes = self.plan["startup_minutes"]
        job.prompt_tokens = longest
        return job

    # embedding -----------------------------------------------------------------------------------------
    def embed_job(self, rule: str, at: dict, count: int = 1) -> Job:
        """Embedding a task's chunks into its index (index_chunks) or its questions to retrieve for (retrieve)."""
        task = at["task"]
        res = job_resources(self.config, rule)
        job = Job(rule, task, count=count, gpus=res.get("gpu", 0))
        emb, corpus = self.plan.get("embedder", {}), self.corpora[task]
        if rule == "index_chunks":
            count, per = corpus["chunks"], corpus["tokens_per_chunk"]
        else:
            count, per = corpus["questions"], corpus["question_tokens"]
        params = emb.get("parameters")
        if params is None:
            job.notes.append("embedder parameters unknown: set plan.embedder.parameters")
        if count is None or per is None:
            job.notes += missing(corpus, task, ("chunks", "tokens_per_chunk") if rule == "index_chunks"
                                 else ("questions", "question_tokens"))
        index = self.index_bytes(corpus["chunks"], emb.get("dim"), job)
        if params is not None and index is not None:
            # sentence-transformers keeps the embedder in fp32 (a batch's activations are small beside it); on
            # the host: the embedder, and the index (index_chunks: also the embeddings it is built from)
            job.memory = {"weights": MASTER * params, "overhead": self.plan["memory_overhead_gb"] * GB}
            job.host_bytes = MASTER * params + index * (2 if rule == "index_chunks" else 1) \
                + self.plan["process_host_gb"] * GB
        if params is not None and count is not None and per is not None:
            job.compute_gpu_hours = 2 * params * count * per / self.flops_per_s() / 3600
        job.fixed_minutes = self.plan["startup_minutes"]
        job.kept_bytes, job.work_bytes = (index if rule == "index_chunks" else 0), 0
        return job

    def index_bytes(self, chunks, dim, job: Job):
        """FAISS IndexFlatIP: dim fp32 values per chunk; HNSW (above retrieval.exact_max) adds its links."""
        if dim is None:
            job.notes.append("embedding width unknown: set plan.embedder.dim")
        if chunks is None or dim is None:
            return None
        size = chunks * dim * 4
        if chunks > self.config["retrieval"]["exact_max"]:
            from kinject.evaluation.retrieval import HNSW_M  # imports faiss: only for indexes this large

            size += chunks * 2 * HNSW_M * 4  # level-0 neighbour lists (int32)
        return size

    # all jobs ------------------------------------------------------------------------------------------
    def estimator(self, rule: str):
        """The estimator of a rule's jobs, (rule, wildcards, count) -> Job; None for a rule the plan only counts."""
        if rule in TRAINING_RULES:
            return self.training_job
        if rule in evaluation_cells(self.config):
            return self.eval_job
        if rule in CONTROL_RULES.values():
            return self.control_job
        if rule in EMBED_RULES:
            return self.embed_job
        return None

    def jobs(self) -> list[Job]:
        """An estimate for every job of the DAG that has an estimator; jobs that differ only in SAME_ESTIMATE
        wildcards are one Job with their count."""
        grouped: dict[tuple, int] = {}
        for job in config_order(self.config, self.dag):
            at = {key: value for key, value in job["wildcards"].items() if key not in SAME_ESTIMATE}
            key = (job["rule"], tuple(at.items()))
            grouped[key] = grouped.get(key, 0) + 1
        out = []
        for (rule, at), count in grouped.items():
            estimate = self.estimator(rule)
            if estimate is not None:
                out.append(estimate(rule, dict(at), count))
        return out


def _set_order(value) -> tuple[int, int]:
    """A paraphrase set (or K) wildcard's sort key: the set, then an extra training seed's tag (none first)."""
    if value == -1:
        return (-1, -1)
    p, seed = untag(value)
    return (p, -1 if seed is None else seed)


def config_order(config: dict, jobs: list[dict]) -> list[dict]:
    """The DAG's jobs, each rule's in the config's order: models and tasks as listed, then shots, the task's
    formats as listed, paraphrase sets, K and learning rates by value (a rule's largest job is its first of
    equals). The rules stay in the order the DAG gives them (the workflow's)."""
    models, tasks = list(config["models"]), list(config["tasks"])
    rules = list(dict.fromkeys(j["rule"] for j in jobs))

    def key(job):
        w = job["wildcards"]
        task = config["tasks"].get(w.get("task"))
        return (rules.index(job["rule"]),
                models.index(w["model"]) if "model" in w else -1,
                tasks.index(w["task"]) if task is not None else -1,
                *(float(w.get(name, -1)) for name in ("shots",)),
                formats(task).index(w["format"]) if task is not None and "format" in w else -1,
                *(_set_order(w.get(name, -1)) for name in ("p", "k")), float(w.get("lr", -1)),
                sorted(w.items()))

    return sorted(jobs, key=key)
