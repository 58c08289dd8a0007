"""LoRA beside full fine-tuning (kinject.training.lora): a LoRA run trains and saves an adapter only, over a base it
leaves untouched; the search adopts a trial's adapter; lm-eval scores the adapter unmerged, as trained; the
rules' settings and command carry the adapter's spec; the grid gets LoRA's cells and jobs."""

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import bad_extended_config
from transformers import AutoModelForCausalLM

from kinject.errors import KinjectError
from kinject.grid import cells
from kinject.io import write_parquet
from kinject.planning.dag import dag_jobs, job_counts
from kinject.settings import load_config
from kinject.training.adapters import check_adapter
from kinject.training.blocks import load_tokenizer, tokenize_blocks
from kinject.training.finetune import train_causal_lm
from kinject.training.hparams import adopt, choose, run_trial
from kinject.training.launch import launch_command, rule_settings
from kinject.training.lora import lora_parameters
from kinject.training.models import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"The canal of Varro {i} opens at {5 + i % 9} o'clock and closes when the {['bell', 'horn'][i % 2]} sounds."
         for i in range(24)]
TRAIN = dict(block_size=32, batch_size=8, per_device_batch_size=4, seed=3)
SPEC = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "base"
    # pre-trained a little on look-alike sentences, so that an adapter has features to work with
    build_tiny_model(TEXTS, out, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     max_position_embeddings=128, seed=0, pretrain_texts=[t.replace("Varro", "Ostra") for t in TEXTS],
                     pretrain_epochs=4, pretrain_lr=1e-2, block_size=32)
    return out


def digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def loss_with(model, base, texts) -> float:
    """Mean next-token loss of `texts` packed as training packs them."""
    blocks = torch.tensor(tokenize_blocks(load_tokenizer(base), texts, 32))
    with torch.no_grad():
        return float(model(input_ids=blocks, labels=blocks).loss)


def peft_model(base, adapter):
    from peft import PeftModel

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).eval()


def test_a_lora_run_saves_a_small_adapter_that_learned_and_leaves_the_base_untouched(base, tmp_path):
    before = digests(base)
    # Why 1e-2: Adam moves every parameter by about lr a step whatever the loss's scale, and the adapter adds
    # alpha/r * B @ A to each weight, B from 0 and A's entries about 0.1 (peft's init, fan-in 32). After one step
    # that is 2 * sqrt(4) * lr * 0.1 = 0.4 lr per entry, against the base's weights' RMS of 0.053: 0.004 (a
    # thirteenth) at 1e-2, 0.02 (two fifths) at 5e-2, where A itself also moves half its size a step. Measured:
    # 1e-2, 2e-2 and 3e-2 end at 0.86 from the base's 1.83, 4e-2 already climbs on its 4th step (ends 0.95), and
    # 5e-2 diverges in every run, to the same curve to the last digit alone or after test_lora.py and
    # test_models.py, on 1 or 2 threads (5.53 at step 9, 3.36 at the end; the adapter's change 3.9x the
    # weights' norm): not the test order. 1e-2 is 4x below that edge; 5e-2 sat just past it.
    train_causal_lm(base, TEXTS, tmp_path / "adapter", tmp_path / "loss.csv", work_dir=tmp_path / "work", lr=1e-2,
                    epochs=8, lora=SPEC, save_dtype="bf16", **TRAIN)
    assert digests(base) == before
    saved = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert "adapter_config.json" in saved and "adapter_model.safetensors" in saved
    assert not {"model.safetensors", "config.json"} & set(saved)  # the adapter only, never the base weights
    from safetensors import safe_open

    with safe_open(tmp_path / "adapter" / "adapter_model.safetensors", "pt") as fh:
        names = list(fh.keys())
        assert {fh.get_slice(n).get_dtype() for n in names} == {"BF16"}
        trained = sum(fh.get_slice(n).get_shape()[0] * fh.get_slice(n).get_shape()[1] for n in names)
    assert names and all("lora_A" in n or "lora_B" in n for n in names)
    assert trained == lora_parameters(SPEC, hidden_size=32, kv_size=32, intermediate_size=64, num_layers=2)
    plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    tuned = peft_model(base, tmp_path / "adapter")
    losses = pd.read_csv(tmp_path / "loss.csv")
    # a diverging run fails here, by name (5e-2: 5.53 at step 9 from 1.80), before the margin below
    assert losses["loss"].max() == losses["loss"].iloc[0], "the loss climbed above its first step's: lr too high"
    # learned: 0.97 below the base at 1e-2, and at 2e-2 and 3e-2 too; 0.2 asked leaves room for other numerics
    assert loss_with(tuned, base, TEXTS) < loss_with(plain, base, TEXTS) - 0.2
    assert set(losses["learning_rate"]) == {1e-2} and losses["epoch"].max() == pytest.approx(8)


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"], ["down_proj"]])
def test_plans_count_of_lora_parameters_is_peft_own(base, targets):
    from peft import get_peft_model

    from kinject.training.lora import lora_config

    spec = {**SPEC, "r": 3, "target_modules": targets}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora_config(spec))
    trainable, _ = model.get_nb_trainable_parameters()
    assert lora_parameters(spec, hidden_size=32, kv_size=32, intermediate_size=64, num_layers=2) == trainable


def test_an_unknown_target_module_is_one_line():
    with pytest.raises(KinjectError, match=r"finetune.lora.target_modules: 'lm_head' is not a linear layer"):
        lora_parameters({**SPEC, "target_modules": ["q_proj", "lm_head"]}, hidden_size=8, kv_size=8,
                        intermediate_size=16, num_layers=1)


def test_a_trials_adapter_is_the_validated_and_adopted_model(base, tmp_path):
    write_parquet(tmp_path / "train.parquet", pd.DataFrame({"text": TEXTS}))
    write_parquet(tmp_path / "val.parquet", pd.DataFrame({"text": [t.replace("opens", "is open") for t in TEXTS]}))
    trial = run_trial(base, tmp_path / "train.parquet", tmp_path / "val.parquet", tmp_path / "lr.json", lr=3e-2,
                      max_epochs=2, work_dir=tmp_path / "work", models=tmp_path / "models", lora=SPEC, **TRAIN)
    choose([tmp_path / "lr.json"], tmp_path / "chosen.json")
    adopt(tmp_path / "chosen.json", [tmp_path / "lr.json"], [tmp_path / "models"], tmp_path / "adapter",
          tmp_path / "loss.csv")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    # the adopted adapter is the one validated: its loss on the validation texts is the trial's at that epoch
    # (the Trainer's evaluation: packed blocks, the mean over every block's tokens)
    chosen = json.loads((tmp_path / "chosen.json").read_text())
    val = [t.replace("opens", "is open") for t in TEXTS]
    assert loss_with(peft_model(base, tmp_path / "adapter"), base, val) == \
        pytest.approx(trial["val_loss_per_epoch"][chosen["epochs"] - 1], rel=1e-3)


def test_lm_eval_scores_the_adapter_unmerged_as_trained(base, tmp_path):
    from kinject.evaluation.evaluate import load_lm

    train_causal_lm(base, TEXTS, tmp_path / "adapter", tmp_path / "loss.csv", work_dir=tmp_path / "work", lr=3e-2,
                    epochs=2, lora=SPEC, **TRAIN)
    ids = torch.tensor([tokenize_blocks(load_tokenizer(base), TEXTS[:1], 16)[0]])
    lm = load_lm(base, peft=str(tmp_path / "adapter"), batch_size=2, device="cpu")
    assert type(lm.model).__name__ == "PeftModelForCausalLM"
    expected = peft_model(base, tmp_path / "adapter")(input_ids=ids).logits
    plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()(input_ids=ids).logits
    with torch.no_grad():
        got = lm._model_call(ids)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_an_adapter_of_another_base_or_no_adapter_is_one_line(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    with pytest.raises(KinjectError, match=r"adapter: no adapter_config.json: not an adapter \(peft\)"):
        check_adapter(adapter, tmp_path / "base")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "other")}))
    with pytest.raises(KinjectError, match=r"adapter_config.json: the adapter was trained over .*other, not .*base"):
        check_adapter(adapter, tmp_path / "base")
    check_adapter(adapter, tmp_path / "other")


def test_the_rules_settings_and_command_carry_the_adapter_and_full_runs_are_unchanged():
    config = load_config(ROOT / "config" / "demo.yaml")
    config["finetune"]["lora"].update(r=8, lr=1e-3)
    full = {**rule_settings(config, "finetune"), "mixed_precision": "no"}  # the launch's (kinject.training.launch.resolved)
    assert "lora" not in full and full["lr"] == config["finetune"]["lr"]
    lora = {**rule_settings(config, "finetune", method="lora"), "mixed_precision": "no"}
    assert json.loads(lora["lora"]) == {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert lora["lr"] == 1e-3 and {k: v for k, v in lora.items() if k not in ("lora", "lr")} == \
        {k: v for k, v in full.items() if k != "lr"}
    files = {"base": "b", "train": "t.parquet", "out": "o", "loss_csv": "l.csv", "work_dir": "w"}
    argv = launch_command(lora, "finetune", files, {"gpu": 0}, 2)
    assert argv[argv.index("--lora") + 1] == lora["lora"]
    assert "--lora" not in launch_command(full, "finetune", files, {"gpu": 0}, 2)
    trial = rule_settings(config, "hparam_trial", method="lora")
    assert trial["lora"] == lora["lora"] and "lr" not in trial


def test_the_extended_demo_grid_has_lora_beside_full_on_current_events_only():
    config = load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")
    from kinject.evaluation.retrievers import cell_retriever

    # dense's cells (the extended demo's other retrievers' FT+RAG cells: tests/test_retrievers.py)
    methods = {(c.task, c.method.split("-p")[0]) for c in cells(config)
               if c.finetuned and cell_retriever(c.method.split("-p")[0])[1] == "dense"}
    assert methods == {("atlas", "ft"), ("current_events", "ft"), ("current_events", "lora"),
                       ("current_events", "ftrag"), ("current_events", "lorarag"), ("handbook", "ft"),
                       ("handbook", "ftrag"), ("atlas", "ftrag"), ("current_events", "qasft"),
                       ("current_events", "qasftrag"),  # and QA-SFT's (tests/test_qa_sft.py), PIT's (test_pit.py)
                       ("current_events", "pit"), ("current_events", "pitrag"), ("current_events", "pitmix"),
                       ("current_events", "pitmixrag"),
                       ("current_events", "syn"), ("current_events", "synrag"),  # synthetic CPT (test_synthetic.py)
                       ("current_events", "steps")}  # the steps-matched control of FT-par10 (finetune.steps_matched)
    counts = job_counts(dag_jobs(config))
    assert counts["hparam_trial_lora"] == 3 and counts["validated_adapter"] == 1 and counts["finetune_lora"] == 2
    assert counts["evaluate_lora"] == 3  # sets 0, 2, 10
    # a control on the base model and on every fine-tuned checkpoint: atlas 1, current events 3 + 3, handbook 1
    assert counts["evaluate_controls_base"] == 1 and counts["evaluate_controls_ft"] == 5
    assert counts["evaluate_controls_lora"] == 3 and counts["forgetting"] == 1


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["finetune"]["lora"].pop("search_lr"),
     "tasks.current_events fine-tunes with lora and has validation, but finetune.lora.search_lr is missing"),
    (lambda c: c["evaluation"]["controls"].update(atlas={"source": "table", "path": "x.jsonl"}),
     "evaluation.controls.atlas: a control is a question set outside every task; atlas is a task"),
    (lambda c: c["evaluation"]["controls"].update(more={"source": "mmlu_csv", "path": "m"}),
     "evaluation.controls.more.subject is required for source mmlu_csv"),
    (lambda c: c["finetune"].update(methods=["full", "qlora"]),
     r"/bad.yaml: finetune.methods: 'qlora' is not a fine-tuning method \(registered: full, lora, qa_sft, pit, pit_mixed, synthetic\)$"),
    (lambda c: c["tasks"]["atlas"].update(finetune_methods=["ful"]),
     r"tasks.atlas.finetune_methods: 'ful' is not a fine-tuning method \(registered: full, lora, qa_sft, pit, pit_mixed, synthetic\)$"),
])
def test_a_bad_lora_or_controls_config_is_one_line(tmp_path, edit, message):
    assert re.search(message, bad_extended_config(tmp_path, edit))


def test_the_adapters_random_init_is_the_runs_seed(base, tmp_path):
    """lora_A starts random: from the run's seed, so a rerun (and every FSDP process) starts from the same one."""
    from safetensors import safe_open

    def adapter(seed, name):
        train_causal_lm(base, TEXTS[:8], tmp_path / name, tmp_path / f"{name}.csv", work_dir=tmp_path / f"w{name}",
                        lr=1e-2, epochs=1, lora=SPEC, **{**TRAIN, "seed": seed})
        with safe_open(tmp_path / name / "adapter_model.safetensors", "pt") as fh:
            return {n: fh.get_tensor(n) for n in fh.keys()}

    first, again, other = adapter(3, "a"), adapter(3, "b"), adapter(4, "c")
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not any(torch.equal(first[n], other[n]) for n in first if "lora_A" in n)
