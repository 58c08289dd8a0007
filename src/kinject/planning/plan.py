"""``kinject plan``: what a config will take before anything runs, per rule.

Jobs (``kinject.grid.expected_job_counts``), GPUs per job (``resources``), peak memory per GPU of the
training and evaluation jobs, GPU-hours, host memory and runtime per job (to compare with the SLURM
``mem_mb`` / ``runtime`` the config asks for), disk for checkpoints and FAISS indexes, and the LLM calls,
tokens and cost of question and paraphrase generation. Every figure is an estimate from the formulas
below and the inputs named in ``plan:`` of the config; GB = 10^9 bytes.

Model figures come from ``models.<m>.shape`` or a local model folder's ``config.json``; corpus sizes from
the artifacts once they exist (``results/{task}/chunks.parquet``, ``questions.parquet``, the paraphrase
and validation sets), else from ``plan.corpus``. A figure nobody gave is reported unknown, with the key
that provides it. Nothing here imports torch or reaches the network.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from kinject import settings
from kinject.errors import KinjectError
from kinject.grid import (
    evaluation_cells,
    evaluation_jobs,
    expected_job_counts,
    finetuned_checkpoints,
    method_tasks,
    rag_ks,
)
from kinject.paths import HUB_MODEL_DIR, RESULTS, results_root, rooted
from kinject.precision import AUTO, save_dtype
from kinject.qa import prompts
from kinject.qa.llm import DEFAULT_MAX_TOKENS, paraphrase_max_tokens, questions_max_tokens, selection_max_tokens
from kinject.training.methods import METHODS

GB = 1e9
MIB = 2 ** 20  # SLURM's --mem unit (mem_mb)
BYTES = {"bf16": 2, "fp32": 4}
MASTER, GRADS, ADAMW = 4, 4, 8  # fp32 master weights, fp32 (sharded) gradients, AdamW exp_avg + exp_avg_sq
LOSS_BYTES = 8  # per logit beyond the compute-dtype logits: the fp32 copy the loss takes and its log-softmax
EVAL_LOGIT_BYTES = 4  # per logit beyond the compute-dtype logits: lm-eval's log-softmax (at most fp32)
TRAINER_CHECKPOINT = MASTER + ADAMW  # bytes per parameter of a Trainer checkpoint (weights + optimizer)
CHOICES = 4  # answer options per question until questions.parquet exists (MMLU: 4; generated: the 4 asked for)
HUB_BYTES = 2  # hub checkpoints of the 7B models are fp16/bf16 safetensors
SHARDED = ("FULL_SHARD", "SHARD_GRAD_OP")
FSDP1_STRATEGIES = {1: "FULL_SHARD", 2: "SHARD_GRAD_OP", 3: "NO_SHARD", 4: "FULL_SHARD", 5: "SHARD_GRAD_OP",
                    "FULL_SHARD": "FULL_SHARD", "SHARD_GRAD_OP": "SHARD_GRAD_OP", "NO_SHARD": "NO_SHARD",
                    # one node per job: hybrid sharding shards over all of the job's processes
                    "HYBRID_SHARD": "FULL_SHARD", "HYBRID_SHARD_ZERO2": "SHARD_GRAD_OP"}
STRATEGY_WORDS = {"FULL_SHARD": "FSDP full shard", "SHARD_GRAD_OP": "FSDP shard grad+optimizer",
                  "NO_SHARD": "FSDP no shard", "DDP": "plain data parallelism"}

# The resources entry each GPU rule reads (rules/*.smk: compute_resources(<key>); a test keeps them equal).
# Each fine-tuning method's rules read the resources entry of their stage.
RESOURCE_KEY = {"build_base_model": "gpu_rules", "index_chunks": "gpu_rules", "retrieve": "gpu_rules",
                "evaluate_base": "evaluate", "evaluate_controls_base": "evaluate",
                **{m.rule(stage): key for m in METHODS.values()
                   for stage, key in (("hparam_trial", "hparam_trial"), ("finetune", "finetune"), ("evaluate", "evaluate"),
                                      ("evaluate_rag", "evaluate"), ("evaluate_controls", "evaluate"))}}
CONTROL_RULES = {"base": "evaluate_controls_base", **{m.name: m.rule("evaluate_controls") for m in METHODS.values()}}
TRAINING_RULES = {m.rule(stage): m for m in METHODS.values() for stage in ("hparam_trial", "finetune")}
EMBED_RULES = ("index_chunks", "retrieve")
SHAPE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
              "max_position_embeddings")
CORPUS_FIELDS = ("chunks", "tokens_per_chunk", "max_chunk_tokens", "questions", "question_tokens",
                 "max_question_tokens", "answer_tokens")


def job_resources(config: dict, rule: str) -> dict:
    """resources.gpu_rules overridden by the rule's own entry (what common.smk's compute_resources gives)."""
    return settings.job_resources(config, RESOURCE_KEY[rule])


def processes(res: dict) -> int:
    """Processes of a job: one per GPU, or resources.<rule>.processes on CPU."""
    return res["gpu"] if res.get("gpu", 0) > 0 else res.get("processes", 1)


# ---- model shapes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    parameters: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    source: str

    @property
    def kv_size(self) -> int:
        """Width of the keys (and of the values): grouped-query attention shares them between heads."""
        return self.hidden_size * self.num_kv_heads // self.num_heads

    @property
    def layer_parameters(self) -> int:
        """One decoder layer: q, o (h x h), k, v (h x kv), gate, up, down (h x i), two RMSNorms (h)."""
        h = self.hidden_size
        return 2 * h * h + 2 * h * self.kv_size + 3 * h * self.intermediate_size + 2 * h

    @property
    def root_parameters(self) -> int:
        """Everything outside the decoder layers: embeddings, LM head, final norm (FSDP's root unit)."""
        return self.parameters - self.num_layers * self.layer_parameters

    @property
    def layer_activations(self) -> int:
        """Values per token that autograd keeps for one decoder layer's backward (fused SDPA attention):
        the two norms' inputs and outputs (4h), q and the attention output (2h), k and v (2kv), the MLP's
        gate and up projections, the SiLU output and their product (4i)."""
        return 6 * self.hidden_size + 2 * self.kv_size + 4 * self.intermediate_size


def llama_parameters(*, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, vocab_size,
                     tied=False, **_) -> int:
    """Parameters of a Llama/Mistral decoder (no biases): embeddings (+ an untied LM head), the layers, final norm."""
    shape = Shape(0, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, vocab_size, 0, "")
    return vocab_size * hidden_size * (1 if tied else 2) + num_layers * shape.layer_parameters + hidden_size


HF_KEYS = {"hidden_size": "hidden_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
           "intermediate_size": "intermediate_size", "vocab_size": "vocab_size",
           "max_position_embeddings": "max_position_embeddings"}


def shape_from_config_json(path: Path) -> Shape:
    """A Llama/Mistral config.json (what save_pretrained writes) as a Shape."""
    try:
        cfg = json.loads(path.read_text())
        figures = {ours: int(cfg[theirs]) for ours, theirs in HF_KEYS.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise KinjectError(path, f"not a model config.json with {', '.join(HF_KEYS.values())} ({exc})") from None
    if cfg.get("model_type") not in ("llama", "mistral"):
        raise KinjectError(path, f"model_type {cfg.get('model_type')!r}: kinject plan counts the parameters of "
                                 "llama and mistral models only; give models.<m>.shape with parameters")
    figures["num_kv_heads"] = int(cfg.get("num_key_value_heads") or figures["num_heads"])
    params = llama_parameters(**figures, tied=bool(cfg.get("tie_word_embeddings", False)))
    return Shape(parameters=params, **figures, source=str(path))


def model_shape(name: str, model: dict, root: Path, results: str = RESULTS) -> tuple[Shape | None, str]:
    """(shape, where it came from) or (None, how to provide it)."""
    if "shape" in model:
        given = model["shape"]
        params = given.get("parameters") or llama_parameters(**given)
        figures = {k: given[k] for k in SHAPE_KEYS}
        source = f"models.{name}.shape" + ("" if "parameters" in given else " (parameters: Llama formula)")
        return Shape(parameters=params, **figures, source=source), source
    local = [root / model["pretrained"]] if "pretrained" in model else []
    local.append(root / results / "models" / name / "base")
    local.append(root / rooted(HUB_MODEL_DIR.format(model=name), results))  # a hub id, once rule download_model fetched it
    for folder in local:
        if (folder / "config.json").is_file():
            shape = shape_from_config_json(folder / "config.json")
            return shape, shape.source
    if "pretrained" in model:
        return None, (f"{name}: shape unknown: {model['pretrained']} is no local folder with a config.json; set "
                      f"models.{name}.shape (the figures of its config.json)")
    return None, (f"{name}: shape unknown until {results}/models/{name}/base is built (snakemake "
                  f"{results}/models/{name}/base), or set models.{name}.shape")



# ---- distribution (the accelerate config) -------------------------------------------------------------

@dataclass(frozen=True)
class Distribution:
    strategy: str  # FULL_SHARD | SHARD_GRAD_OP | NO_SHARD | DDP
    mixed_precision: str | None  # the accelerate file's own (None: none); the launch's --mixed_precision overrides it
    offload: bool = False  # FSDP parameter/optimizer offload to host memory
    efficient_loading: bool = False  # rank 0 loads the checkpoint, the others get its shards
    activation_checkpointing: bool = False
    source: str = "no finetune.accelerate_config"

    @property
    def words(self) -> str:
        return STRATEGY_WORDS[self.strategy]


def read_accelerate_config(path) -> Distribution:
    """The sharding an accelerate config file asks for (FSDP 1 or 2, MULTI_GPU or single process)."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise KinjectError(path, "not found (finetune.accelerate_config)") from None
    except yaml.YAMLError as exc:
        raise KinjectError(path, f"not valid YAML ({exc})") from None
    kind = cfg.get("distributed_type", "NO")
    mixed = str(cfg["mixed_precision"]) if "mixed_precision" in cfg else None
    if kind in ("NO", "MULTI_GPU", "MULTI_CPU"):
        return Distribution("DDP", mixed, source=str(path))
    if kind != "FSDP":
        raise KinjectError(path, f"distributed_type {kind!r}: kinject plan models FSDP, MULTI_GPU, MULTI_CPU and NO")
    fsdp = cfg.get("fsdp_config") or {}
    if int(fsdp.get("fsdp_version", 1)) == 2:
        strategy = "FULL_SHARD" if fsdp.get("fsdp_reshard_after_forward", True) else "SHARD_GRAD_OP"
    else:
        given = fsdp.get("fsdp_sharding_strategy", "FULL_SHARD")
        strategy = FSDP1_STRATEGIES.get(given)
        if strategy is None:
            raise KinjectError(path, f"fsdp_sharding_strategy {given!r} is not one of {sorted(map(str, FSDP1_STRATEGIES))}")
    return Distribution(strategy, mixed, offload=bool(fsdp.get("fsdp_offload_params", False)),
                        efficient_loading=bool(fsdp.get("fsdp_cpu_ram_efficient_loading", False)),
                        activation_checkpointing=bool(fsdp.get("fsdp_activation_checkpointing", False)),
                        source=str(path))


# ---- memory -------------------------------------------------------------------------------------------

def training_memory(shape: Shape, *, processes: int, dist: Distribution, precision: str, micro_batch: int,
                    block_size: int, checkpointing: bool, overhead_gb: float,
                    trainable: int | None = None) -> dict[str, float]:
    """Peak bytes per GPU of one training process, by part.

    ``trainable``: an adapter run's adapter parameters (its method's trainable); the frozen weights are
    still fp32 master weights (sharded like full fine-tuning's), but gradients and AdamW's moments exist
    for the adapter only, and a layer's unsharded gradients are the adapter's. Without it, every parameter.

    Sharded state (FULL_SHARD / SHARD_GRAD_OP: divided by the process count; offloaded: on the host):
    fp32 master weights (4 B/parameter), fp32 gradients (4), AdamW's two moments (8). Compute copies
    (bf16, or fp32 without mixed precision): FULL_SHARD gathers the root unit (embeddings, LM head,
    final norm) for the whole step and two decoder layers at a time (the one computing and the one
    prefetched), and holds the root's and one layer's unsharded gradients until they are reduce-scattered;
    SHARD_GRAD_OP keeps every layer gathered; NO_SHARD / DDP keep whole fp32 replicas, plus autocast's
    bf16 copy of the weights. Activations of one micro-batch (micro_batch x block_size tokens):
    with checkpointing each layer's input (h values per token) plus one layer recomputed during its
    backward, without it every layer's saved tensors (Shape.layer_activations). Logits: compute-dtype
    logits plus the loss's fp32 copy and log-softmax (8 B) per token and vocabulary entry. Overhead: CUDA
    context, NCCL buffers, allocator fragmentation (plan.memory_overhead_gb).
    """
    p, c = shape.parameters, BYTES[precision]
    shards = processes if dist.strategy in SHARDED else 1
    state = 0 if dist.offload else p / shards
    if dist.strategy == "FULL_SHARD":
        gathered = c * (shape.root_parameters + 2 * shape.layer_parameters)
    elif dist.strategy == "SHARD_GRAD_OP":
        gathered = c * p
    else:
        gathered = 2 * p if precision == "bf16" else 0
    unsharded_grads = c * (shape.root_parameters + shape.layer_parameters) if dist.strategy in SHARDED else 0
    tuned = state if trainable is None else trainable / (shards if dist.strategy in SHARDED else 1)
    if trainable is not None:
        unsharded_grads = c * trainable / shape.num_layers if dist.strategy in SHARDED else 0
    tokens = micro_batch * block_size
    if checkpointing:
        activations = c * tokens * (shape.num_layers * shape.hidden_size + shape.layer_activations)
    else:
        activations = c * tokens * shape.num_layers * shape.layer_activations
    return {"weights": MASTER * state, "gradients": GRADS * tuned, "optimizer": ADAMW * tuned,
            "gathered": gathered, "layer_grads": unsharded_grads, "activations": activations,
            "logits": tokens * shape.vocab_size * (c + LOSS_BYTES), "overhead": overhead_gb * GB}


def eval_memory(shape: Shape, *, precision: str, batch_size: int, tokens: int, overhead_gb: float) -> dict[str, float]:
    """Peak bytes per GPU of an evaluation job: weights in the evaluation dtype; for one batch of the longest
    prompt (lm-eval sorts requests by length), the KV cache the forward pass builds (keys and values of
    every layer), one layer's working set (residual stream, attention output, the MLP's gate, up and
    product: 2h + 3i values per token), the logits plus their log-softmax (at most fp32); overhead."""
    c, n = BYTES[precision], batch_size * tokens
    return {"weights": c * shape.parameters,
            "kv_cache": c * 2 * shape.num_layers * n * shape.kv_size,
            "working_set": c * n * (2 * shape.hidden_size + 3 * shape.intermediate_size),
            "logits": n * shape.vocab_size * (c + EVAL_LOGIT_BYTES), "overhead": overhead_gb * GB}


def training_host_memory(shape: Shape, *, processes: int, dist: Distribution, save_dtype: str,
                         process_gb: float) -> float:
    """Peak host bytes of a training job: loading the base checkpoint in fp32 (once with FSDP's
    cpu_ram_efficient_loading, else once per process) or saving (the full fp32 state dict gathered on rank
    0 plus its copy in save_dtype), whichever is larger; offloaded state; plan.process_host_gb per process."""
    p = shape.parameters
    load = MASTER * p * (1 if dist.efficient_loading else processes)
    save = MASTER * p + (BYTES[save_dtype] * p if save_dtype != "fp32" else 0)
    offloaded = (MASTER + GRADS + ADAMW) * p if dist.offload else 0
    return max(load, save) + offloaded + processes * process_gb * GB


# ---- corpus -------------------------------------------------------------------------------------------

@dataclass
class Corpus:
    figures: dict = field(default_factory=dict)  # CORPUS_FIELDS + "choices"; None when unknown
    sources: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.figures.get(key)


def text_tokens(texts, chars_per_token: float) -> list[int]:
    return [math.ceil(len(t) / chars_per_token) for t in texts]


def read_column(path: Path, column: str) -> list:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=[column]).column(column).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a broken or foreign file
        raise KinjectError(path, f"cannot read column {column!r} ({exc})") from None


def text_stats(path: Path, chars_per_token: float) -> tuple[int, int, int]:
    """(texts, total tokens, longest) of a parquet's text column."""
    tokens = text_tokens([str(t) for t in read_column(path, "text")], chars_per_token)
    return len(tokens), sum(tokens), max(tokens, default=0)


def task_corpus(config: dict, task: str, root: Path) -> Corpus:
    """The task's corpus figures: from its artifacts when they exist, else plan.corpus.<task> / .default."""
    cpt = config["plan"]["chars_per_token"]
    estimates = config["plan"].get("corpus", {})
    corpus = Corpus()
    for key in CORPUS_FIELDS:
        for where in (task, "default"):
            if key in estimates.get(where, {}):
                corpus.figures[key] = estimates[where][key]
                corpus.sources[key] = f"plan.corpus.{where}"
                break
    corpus.figures["choices"], corpus.sources["choices"] = CHOICES, "kinject.planning.plan.CHOICES"
    chunks = root / results_root(config) / task / "chunks.parquet"
    if chunks.is_file():
        n, total, longest = text_stats(chunks, cpt)
        corpus.figures.update(chunks=n, tokens_per_chunk=total / max(n, 1), max_chunk_tokens=longest)
        corpus.sources.update(dict.fromkeys(("chunks", "tokens_per_chunk", "max_chunk_tokens"), str(chunks)))
    questions = root / results_root(config) / task / "questions.parquet"
    if questions.is_file():
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(questions, columns=["question", "choices", "split"]).to_pylist()
        except Exception as exc:
            raise KinjectError(questions, f"cannot read question, choices, split ({exc})") from None
        test = [r for r in rows if r["split"] == "test"]
        asked = text_tokens([f"Question: {r['question']}\nAnswer:" for r in test], cpt)
        answers = text_tokens([f" {c}" for r in test for c in r["choices"]], cpt)
        corpus.figures.update(questions=len(test), question_tokens=sum(asked) / max(len(asked), 1),
                              max_question_tokens=max(asked, default=0),
                              answer_tokens=sum(answers) / max(len(answers), 1),
                              choices=len(answers) / max(len(test), 1))
        corpus.sources.update(dict.fromkeys(("questions", "question_tokens", "max_question_tokens", "answer_tokens",
                                             "choices"), str(questions)))
    for key in CORPUS_FIELDS:
        corpus.figures.setdefault(key, None)
    return corpus


def missing(corpus: Corpus, task: str, keys) -> list[str]:
    """How to provide each unknown figure among keys."""
    artifact = {"chunks": "chunks.parquet", "tokens_per_chunk": "chunks.parquet", "max_chunk_tokens": "chunks.parquet"}
    return [f"{task}: {key} unknown: build results/{task}/{artifact.get(key, 'questions.parquet')} "
            f"or set plan.corpus.{task}.{key}" for key in keys if corpus[key] is None]


# ---- per-job work -------------------------------------------------------------------------------------

def training_tokens(config: dict, task: str, corpus: Corpus, root: Path, k: int) -> float | None:
    """Tokens of paraphrase set k per epoch: its parquet once built, else chunks x (1 + k) texts (a
    paraphrase is about as long as its chunk: the prompt asks for it); + BOS/EOS per text."""
    path = root / results_root(config) / task / "paraphrases" / f"paraphrases_k{k}.parquet"
    if path.is_file():
        n, total, _ = text_stats(path, config["plan"]["chars_per_token"])
        return total + 2 * n
    if corpus["chunks"] is None or corpus["tokens_per_chunk"] is None:
        return None
    return corpus["chunks"] * (1 + k) * (corpus["tokens_per_chunk"] + 2)


def validation_tokens(config: dict, task: str, corpus: Corpus, root: Path) -> float | None:
    path = root / results_root(config) / task / "validation" / "paraphrases.parquet"
    if path.is_file():
        n, total, _ = text_stats(path, config["plan"]["chars_per_token"])
        return total + 2 * n
    if corpus["chunks"] is None or corpus["tokens_per_chunk"] is None:
        return None
    val = config["tasks"][task]["validation"]
    return min(val["chunks"], corpus["chunks"]) * val["paraphrases"] * (corpus["tokens_per_chunk"] + 2)


def training_flops(parameters: int, tokens: float, checkpointing: bool, adapter: bool = False) -> float:
    """6 x parameters x tokens (forward 2, backward 4), + 2 when checkpointing recomputes the forward; an
    adapter run's backward computes the activations' gradients (2) but no frozen weight's (its adapter's are ~0.1%):
    4, + 2. Attention's own FLOPs (12 x layers x block x hidden per token: about 1% at 256-token blocks) are
    left out."""
    return ((4 if adapter else 6) + (2 if checkpointing else 0)) * parameters * tokens


def eval_requests(config: dict, corpus: Corpus, shots: int, k: int) -> tuple[float | None, int | None]:
    """(tokens through the model for one cell, tokens of its longest request). A request is one answer
    option after its prompt: shots x (question + answer) examples, K retrieved chunks (and K per example with
    evaluation.fewshot_context: every_example), the question. Stock lm-eval runs every request whole, so the
    prompt C times for C options; the shared prefix (evaluation.shared_prefix) runs the prompt once and the
    C options from its cached keys and values."""
    needed = ["questions", "question_tokens", "answer_tokens"] + (["tokens_per_chunk", "max_chunk_tokens"] if k else [])
    if any(corpus[key] is None for key in needed) or corpus["max_question_tokens"] is None:
        return None, None
    evaluation = config.get("evaluation", {})
    every = evaluation.get("fewshot_context", "question_only") == "every_example"
    answer = corpus["answer_tokens"]
    example = corpus["question_tokens"] + answer
    context = k * corpus["tokens_per_chunk"] if k else 0
    prompt = shots * (example + (context if every else 0)) + context + corpus["question_tokens"]
    per_question = (prompt + corpus["choices"] * answer if evaluation.get("shared_prefix", True)
                    else corpus["choices"] * (prompt + answer))
    longest = shots * (example + (context if every else 0)) + (k * corpus["max_chunk_tokens"] if k else 0) \
        + corpus["max_question_tokens"] + answer
    return corpus["questions"] * per_question, math.ceil(longest)


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
    def __init__(self, config: dict, root: Path):
        self.config, self.root = config, Path(root)
        self.plan = config["plan"]
        self.precision = planned_precision(config)
        ft = config["finetune"]
        self.save_dtype = save_dtype(ft.get("save_dtype"), self.precision)
        self.dist = (read_accelerate_config(self.root / ft["accelerate_config"]) if "accelerate_config" in ft
                     else Distribution("DDP", None))
        self.checkpointing = ft["gradient_checkpointing"] or self.dist.activation_checkpointing
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

    def flops_per_s(self) -> float:
        return self.plan["achievable_tflops"][self.precision] * 1e12

    def shape(self, model: str, job: Job) -> Shape | None:
        shape, source = self.shapes[model]
        if shape is None:
            job.notes.append(source)
        return shape

    # training ------------------------------------------------------------------------------------------
    def training_job(self, rule: str, model: str, task: str, *, count: int, k: int) -> Job:
        res = job_resources(self.config, rule)
        n = processes(res)
        ft, plan = self.config["finetune"], self.plan
        method = TRAINING_RULES[rule]
        job = Job(rule, f"{model} {task} k{k}" if rule.startswith("finetune") else f"{model} {task}", model,
                  count=count, gpus=res.get("gpu", 0))
        shape = self.shape(model, job)
        tokens = training_tokens(self.config, task, self.corpora[task], self.root, k)
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
            job.adopted_bytes = final if 0 in task_cfg["paraphrase_sets"] else 0
        # the Trainer writes the next checkpoint before deleting the previous one (save_total_limit=1);
        # a trial's epoch models stay in its work directory until it ends
        job.work_bytes = 2 * TRAINER_CHECKPOINT * saved + (epochs * final if trial else 0)
        return job

    # evaluation ----------------------------------------------------------------------------------------
    def eval_job(self, rule: str, at: dict) -> Job:
        model, task, shots = at["model"], at["task"], at["shots"]
        label = f"{model} {task} {shots}-shot" + (f" p{at['p']}" if "p" in at else "")
        runs = [evaluate_k for _, evaluate_k in evaluation_cells(self.config)[rule]]
        return self.scoring_job(rule, model, label, [(task, self.corpora[task], shots, k) for k in runs])

    def control_job(self, method: str, model: str, task: str | None = None, p: int | None = None) -> Job:
        """One job scoring every control (0-shot, K = 0) on a base model or a fine-tuned checkpoint."""
        label = f"{model} " + ("base" if method == "base" else f"{task} {method} p{p}")
        return self.scoring_job(CONTROL_RULES[method], model, label,
                                [(f"controls/{c}", self.corpora[f"controls/{c}"], 0, 0)
                                 for c in self.config["evaluation"]["controls"]])

    def scoring_job(self, rule: str, model: str, label: str, runs: list) -> Job:
        """An evaluation job: one model load scoring each of ``runs`` ((name, corpus, shots, K) per lm-eval task)."""
        res = job_resources(self.config, rule)
        job = Job(rule, label, model, gpus=res.get("gpu", 0), kept_bytes=0, work_bytes=0)
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
    def embed_job(self, rule: str, task: str) -> Job:
        res = job_resources(self.config, rule)
        job = Job(rule, task, gpus=res.get("gpu", 0))
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
    def jobs(self) -> list[Job]:
        config, out = self.config, []
        for method in METHODS.values():
            tasks = method_tasks(config, method.name)
            validated = [t for t in tasks if "validation" in config["tasks"][t]]
            n_lr = len(method.search_lrs(config))
            for model in config["models"]:
                out += [self.training_job(method.rule("hparam_trial"), model, t, count=n_lr, k=0)
                        for t in validated if n_lr]
                for task in tasks:
                    cfg = config["tasks"][task]
                    # set 0 of a searched task is the chosen trial's model: nothing left to train
                    sets = [k for k in cfg["paraphrase_sets"] if not (k == 0 and "validation" in cfg and n_lr)]
                    out += [self.training_job(method.rule("finetune"), model, task, count=1, k=k) for k in sets]
        for rule, jobs in evaluation_jobs(config).items():
            out += [self.eval_job(rule, at) for at in jobs]
        if config["evaluation"]["controls"]:
            out += [self.control_job("base", model) for model in config["models"]]
            out += [self.control_job(c["method"], c["model"], c["task"], c["p"]) for c in finetuned_checkpoints(config)]
        if rag_ks(config):
            out += [self.embed_job(rule, task) for rule in EMBED_RULES for task in config["tasks"]]
        return out


# ---- LLM calls ----------------------------------------------------------------------------------------

def template_tokens(messages: list[dict], chars_per_token: float) -> int:
    return math.ceil(sum(len(m["content"]) for m in messages) / chars_per_token)


def llm_usage(config: dict, corpora: dict[str, Corpus]) -> list[dict]:
    """Calls, prompt and reply tokens of each LLM rule, following the code's call structure: per chunk one
    question call and one selection call (kinject.qa.sets), ceil(count / per_call) paraphrase calls
    (kinject.qa.paraphrases), one call per validation chunk. A prompt is its template's characters /
    plan.chars_per_token plus the chunk's tokens; a paraphrase is about as long as its chunk; a question
    reply and a selection reply are plan.llm_reply_tokens.

    The worst case is what the requests' max_tokens allow (the bounds kinject.qa.llm computes from llm.max_tokens):
    every reply as long as its bound, every call asked 1 + llm.invalid_retries times."""
    cpt = config["plan"]["chars_per_token"]
    reply = config["plan"]["llm_reply_tokens"]
    bound = {**DEFAULT_MAX_TOKENS, **config["llm"].get("max_tokens", {})}
    attempts = 1 + config["llm"].get("invalid_retries", 0)
    count, per_call = config["paraphrases"]["count"], config["paraphrases"]["per_call"]
    rows = []
    for task, cfg in config["tasks"].items():
        corpus, q = corpora[task], cfg["questions"]
        # (rule, calls, template tokens, chunk tokens in the prompt?, reply tokens per call: fixed, in chunk
        # lengths, the calls' max_tokens given a chunk's characters)
        planned = []
        if q["source"] == "generated":
            per_chunk, keep = q["per_chunk"], q["keep"]
            planned.append(("generate_questions", 1, template_tokens(prompts.questions_messages("", per_chunk), cpt),
                            True, per_chunk * reply["question"], 0,
                            lambda chars, n=per_chunk: questions_max_tokens(bound, n)))
            if per_chunk > keep:  # the listing of the candidates is in the prompt
                planned.append(("select_questions", 1, template_tokens(prompts.select_messages([], keep), cpt)
                                + per_chunk * reply["question"], False, reply["selection"], 0,
                                lambda chars: selection_max_tokens(bound)))
        if max(cfg["paraphrase_sets"]) > 0:
            sizes = [min(per_call, count - i) for i in range(0, count, per_call)]  # as kinject.qa.paraphrases asks
            planned.append(("paraphrase_chunks", len(sizes),
                            template_tokens(prompts.paraphrase_messages("", per_call), cpt), True, 0,
                            count / len(sizes),
                            lambda chars, sizes=sizes: sum(paraphrase_max_tokens(bound, chars, n) for n in sizes)))
        if "validation" in cfg:
            val = cfg["validation"]
            planned.append(("validation_paraphrases", 1, template_tokens(prompts.paraphrase_messages("", val["paraphrases"]),
                                                                         cpt), True, 0, val["paraphrases"],
                            lambda chars, n=val["paraphrases"]: paraphrase_max_tokens(bound, chars, n)))
        for rule, per_chunk_calls, template, with_chunk, reply_fixed, reply_chunks, max_tokens in planned:
            chunks, tokens = corpus["chunks"], corpus["tokens_per_chunk"]
            if chunks is None or tokens is None:
                rows.append({"rule": rule, "task": task, "calls": None, "input_tokens": None, "output_tokens": None,
                             "worst_input_tokens": None, "worst_output_tokens": None,
                             "notes": missing(corpus, task, ("chunks", "tokens_per_chunk"))})
                continue
            if rule == "validation_paraphrases":
                chunks = min(cfg["validation"]["chunks"], chunks)
            calls = chunks * per_chunk_calls
            input_tokens = calls * (template + (tokens if with_chunk else 0))
            rows.append({"rule": rule, "task": task, "calls": calls, "input_tokens": input_tokens,
                         "output_tokens": calls * (reply_fixed + reply_chunks * tokens),
                         "worst_input_tokens": attempts * input_tokens,
                         "worst_output_tokens": attempts * chunks * max_tokens(tokens * cpt), "notes": []})
    price = config["plan"].get("llm_prices", {}).get(config["llm"]["model"])
    for r in rows:
        for prefix in ("", "worst_"):
            r[f"{prefix}usd"] = None if price is None or r["calls"] is None else \
                (r[f"{prefix}input_tokens"] * price["input"] + r[f"{prefix}output_tokens"] * price["output"]) / 1e6
    return rows


# ---- the plan -----------------------------------------------------------------------------------------

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


def make_plan(config: dict, root: Path | str = ".") -> dict:
    """Everything ``kinject plan`` reports, as plain data (``--json`` prints it). Artifacts, local model
    folders and the accelerate config are looked up under ``root`` (where Snakemake runs)."""
    root = Path(root)
    planner = Planner(config, root)
    plan, warnings = config["plan"], planner.warnings
    jobs = planner.jobs()
    rules = {}
    for rule, n in expected_job_counts(config).items():
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
    model = config["llm"]["model"]
    price = plan.get("llm_prices", {}).get(model)
    if price is None and llm:
        planner.notes.append(f"LLM cost unknown: set plan.llm_prices.{model} (USD per 10^6 input and output tokens)")
    hub = [m for m, cfg in config["models"].items() if "pretrained" in cfg and not (root / cfg["pretrained"]).exists()]
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
        "notes": planner.notes,
        "warnings": warnings,
    }


# ---- the table --------------------------------------------------------------------------------------

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
