"""A model's architecture for the plan: ``models.<m>.shape`` in the config or a local model folder's
``config.json``, as a ``Shape`` whose parameter counts the memory and FLOP formulas read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kinject.errors import KinjectError
from kinject.paths import HUB_MODEL_DIR, RESULTS, rooted

SHAPE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
              "max_position_embeddings")


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
