"""LoRA beside full fine-tuning: the fine-tuning method ``lora`` (config ``finetune.methods``) trains a peft
LoRA adapter over the frozen base model with the same loop, data, schedule and search as ``full``.

An adapter is a small declared artifact (``adapter_config.json`` + ``adapter_model.safetensors``: megabytes
where a full checkpoint is gigabytes), and it is evaluated as it is, unmerged: lm-eval's HF model loads the
base model and applies the adapter through its ``peft`` argument. Merging first (``merge_and_unload``) would
write a full-size checkpoint per adapter and, in bf16, round the merged update into the base weights; the
unmerged adapter computes the very model that was trained, at the cost of a little more compute per forward.
"""

from __future__ import annotations

import json
import logging

from kinject.errors import KinjectError

log = logging.getLogger(__name__)

# the linear layers of a Llama / Mistral decoder layer ("all-linear": every one of them; the LM head never)
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_spec(config: dict) -> dict:
    """What a LoRA run is, from ``finetune.lora``: rank, alpha, dropout, target modules (the rule's params)."""
    lora = config["finetune"]["lora"]
    return {"r": lora["r"], "alpha": lora["alpha"], "dropout": lora["dropout"],
            "target_modules": lora["target_modules"]}


def lora_config(spec: dict):
    """peft's ``LoraConfig`` of a spec (``lora_spec``): a causal-LM adapter, no bias terms trained."""
    from peft import LoraConfig, TaskType

    return LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
                      target_modules=spec["target_modules"], bias="none", task_type=TaskType.CAUSAL_LM)


def add_adapter(model, spec: dict, *, gradient_checkpointing: bool):
    """``model`` with a trainable LoRA adapter over its frozen weights (peft's ``get_peft_model``), logged with
    its count of trainable parameters. With gradient checkpointing the embeddings' output must require
    gradients (the frozen embeddings give none), or the recomputed layers would have nothing to backpropagate."""
    from peft import get_peft_model

    if gradient_checkpointing:
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(spec))
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%g dropout=%g on %s: %d trainable parameters of %d (%.3f%%)", spec["r"],
             spec["alpha"], spec["dropout"], spec["target_modules"], trainable, total, 100 * trainable / total)
    return model


def lora_parameters(spec: dict, *, hidden_size: int, kv_size: int, intermediate_size: int, num_layers: int) -> int:
    """Trainable parameters of a LoRA adapter on a Llama / Mistral decoder: r x (inputs + outputs) for each
    targeted linear layer of every decoder layer (``target_modules`` "all-linear" or a list of their names)."""
    h, i = hidden_size, intermediate_size
    shapes = {"q_proj": (h, h), "k_proj": (h, kv_size), "v_proj": (h, kv_size), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    targets = spec["target_modules"]
    names = LLAMA_LINEARS if targets == "all-linear" else targets
    unknown = sorted(set(names) - set(shapes))
    if unknown:
        raise KinjectError("finetune.lora.target_modules", f"{unknown[0]!r} is not a linear layer of a Llama / "
                           f"Mistral decoder layer ({', '.join(LLAMA_LINEARS)}, or all-linear)")
    return num_layers * sum(spec["r"] * (a + b) for a, b in (shapes[n] for n in names))


def options(config: dict) -> dict:
    """What method lora adds to the training rules' settings (their params) and command line: the adapter's
    spec as JSON (``--lora``)."""
    return {"lora": json.dumps(lora_spec(config), sort_keys=True)}


def trainable_parameters(config: dict, shape) -> int:
    """The planner's trainable parameters of a LoRA run on a model of ``shape`` (kinject.planning.shapes.Shape)."""
    return lora_parameters(lora_spec(config), hidden_size=shape.hidden_size, kv_size=shape.kv_size,
                           intermediate_size=shape.intermediate_size, num_layers=shape.num_layers)


def saved_weight(name: str) -> bool:
    """A state-dict entry a LoRA run saves: its adapter's weights only (as peft's save_pretrained keeps)."""
    return "lora_" in name
