"""Peak memory (per GPU and on the host) and FLOPs of one training or evaluation job, from a model's shape, the
job's distribution and its batch: the formulas docs/plan.md describes. GB = 10^9 bytes."""

from __future__ import annotations

from kinject.planning.distribution import SHARDED, Distribution
from kinject.planning.shapes import Shape

GB = 1e9
MIB = 2 ** 20  # SLURM's --mem unit (mem_mb)
BYTES = {"bf16": 2, "fp32": 4}
MASTER, GRADS, ADAMW = 4, 4, 8  # fp32 master weights, fp32 (sharded) gradients, AdamW exp_avg + exp_avg_sq
LOSS_BYTES = 8  # per logit beyond the compute-dtype logits: the fp32 copy the loss takes and its log-softmax
EVAL_LOGIT_BYTES = 4  # per logit beyond the compute-dtype logits: lm-eval's log-softmax (at most fp32)
TRAINER_CHECKPOINT = MASTER + ADAMW  # bytes per parameter of a Trainer checkpoint (weights + optimizer)


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


def training_flops(parameters: int, tokens: float, checkpointing: bool, adapter: bool = False) -> float:
    """6 x parameters x tokens (forward 2, backward 4), + 2 when checkpointing recomputes the forward; an
    adapter run's backward computes the activations' gradients (2) but no frozen weight's (its adapter's are ~0.1%):
    4, + 2. Attention's own FLOPs (12 x layers x block x hidden per token: about 1% at 256-token blocks) are
    left out."""
    return ((4 if adapter else 6) + (2 if checkpointing else 0)) * parameters * tokens
