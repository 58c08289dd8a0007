"""kinject plan: its formulas against hand-computed figures for 7B models, and config.yaml's resources
against what it computes for config.yaml."""

import functools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_DEMO, tiny_demo

from kinject.cli import main
from kinject.errors import KinjectError
from kinject.planning.corpus import Corpus, eval_requests
from kinject.planning.dag import dag_jobs
from kinject.planning.distribution import Distribution, read_distribution
from kinject.planning.jobs import RESOURCE_KEY
from kinject.planning.memory import GB, MIB, eval_memory, training_host_memory, training_memory
from kinject.planning.plan import make_plan
from kinject.planning.render import format_plan
from kinject.planning.shapes import Shape, llama_parameters
from kinject.qa import prompts
from kinject.settings import load_config

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = "profiles/slurm/accelerate_fsdp.yaml"
DEMO_ACCELERATE = "profiles/local/accelerate_cpu.yaml"

# The published config.json figures (Llama-2-7b-hf, Mistral-7B-v0.1), as config.yaml gives them.
LLAMA2_7B = dict(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32, intermediate_size=11008,
                 vocab_size=32000, max_position_embeddings=4096)
MISTRAL_7B = dict(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8, intermediate_size=14336,
                  vocab_size=32000, max_position_embeddings=32768)
FULL_SHARD = Distribution("FULL_SHARD", "bf16", efficient_loading=True)


def shape(figures, parameters) -> Shape:
    return Shape(parameters=parameters, **figures, source="test")


def bare_root(tmp_path) -> Path:
    """A directory with the shipped accelerate config and no artifacts: the plan uses the estimates."""
    (tmp_path / ACCELERATE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ACCELERATE, tmp_path / ACCELERATE)
    return tmp_path


@functools.cache
def paper_dag() -> list[dict]:
    return dag_jobs(load_config(ROOT / "config.yaml"))


def paper_plan(tmp_path, edit=None, same_jobs=True) -> dict:
    """The plan of config.yaml after ``edit``; ``same_jobs``: an edit that changes no job (resources,
    precision), so the DAG of config.yaml is reused rather than built again."""
    config = load_config(ROOT / "config.yaml")
    if edit:
        edit(config)
    return make_plan(config, bare_root(tmp_path), paper_dag() if same_jobs else None)


# ---- parameters ---------------------------------------------------------------------------------------

def test_parameter_formula_gives_the_published_7b_counts():
    # Llama-2-7B: embeddings and LM head 2 x 32000 x 4096 = 262,144,000; per layer q, k, v, o 4 x 4096^2
    # = 67,108,864, MLP 3 x 4096 x 11008 = 135,266,304, two norms 8,192: 202,383,360; x 32 = 6,476,267,520;
    # final norm 4,096.
    assert llama_parameters(**LLAMA2_7B) == 262_144_000 + 6_476_267_520 + 4_096 == 6_738_415_616
    # Mistral-7B: k and v are 4096 x 1024 (8 KV heads of 128): per layer 2 x 4096^2 + 2 x 4096 x 1024
    # + 3 x 4096 x 14336 + 8,192 = 33,554,432 + 8,388,608 + 176,160,768 + 8,192 = 218,112,000.
    assert llama_parameters(**MISTRAL_7B) == 262_144_000 + 32 * 218_112_000 + 4_096 == 7_241_732_096
    # Orca-2-7B: Llama-2-7B with 3 more tokens in the embeddings and the LM head.
    assert llama_parameters(**{**LLAMA2_7B, "vocab_size": 32003}) == 6_738_415_616 + 2 * 3 * 4096
    config = load_config(ROOT / "config.yaml")
    for name, model in config["models"].items():
        assert model["shape"]["parameters"] == llama_parameters(**model["shape"]), name


def test_parameter_formula_matches_transformers_for_grouped_query_attention():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    figures = dict(hidden_size=64, num_layers=3, num_heads=8, num_kv_heads=2, intermediate_size=160, vocab_size=300)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2, intermediate_size=160,
        vocab_size=300, tie_word_embeddings=False))
    assert llama_parameters(**figures) == model.num_parameters()


# ---- memory -------------------------------------------------------------------------------------------

def test_training_memory_llama2_7b_fsdp4_full_shard_bf16_checkpointing():
    p = 6_738_415_616
    parts = training_memory(shape(LLAMA2_7B, p), processes=4, dist=FULL_SHARD, precision="bf16", micro_batch=4,
                            block_size=256, checkpointing=True, overhead_gb=4)
    # sharded over 4 GPUs: fp32 master weights 4 B, fp32 gradients 4 B, AdamW moments 8 B per parameter
    assert parts["weights"] == 4 * p / 4 == 6_738_415_616
    assert parts["gradients"] == 6_738_415_616
    assert parts["optimizer"] == 8 * p / 4 == 13_476_831_232
    # bf16 copies gathered: the root unit (embeddings + LM head + final norm: 262,148,096) and two layers
    # (202,383,360 each); unsharded bf16 gradients of the root and one layer
    assert parts["gathered"] == 2 * (262_148_096 + 2 * 202_383_360) == 1_333_829_632
    assert parts["layer_grads"] == 2 * (262_148_096 + 202_383_360) == 929_062_912
    # 4 x 256 = 1024 tokens; checkpointing keeps each of the 32 layers' input (4096 bf16 values per token)
    # and recomputes one layer: 6 x 4096 + 2 x 4096 + 4 x 11008 = 76,800 values per token
    assert parts["activations"] == 32 * 1024 * 4096 * 2 + 1024 * 76_800 * 2 == 425_721_856
    # logits: 1024 x 32000, bf16 (2 B) + the loss's fp32 copy and log-softmax (8 B)
    assert parts["logits"] == 1024 * 32_000 * 10 == 327_680_000
    assert parts["overhead"] == 4e9
    assert sum(parts.values()) == 33_969_956_864  # about 34.0 GB: fits an 80 GB GPU


def test_lora_training_memory_keeps_the_frozen_weights_and_trains_only_the_adapter():
    """Llama-2-7B, LoRA r=16 on every linear layer (peft's count: r x (in + out) per layer), FSDP over 4 GPUs."""
    from kinject.training.lora import lora_parameters

    p = 6_738_415_616
    adapter = lora_parameters({"r": 16, "target_modules": "all-linear"}, hidden_size=4096, kv_size=4096,
                              intermediate_size=11008, num_layers=32)
    # per layer: q, k, v, o 16 x (4096 + 4096) each, gate and up 16 x (4096 + 11008), down 16 x (11008 + 4096)
    assert adapter == 32 * 16 * (4 * 8192 + 3 * 15104) == 39_976_960
    common = dict(processes=4, dist=FULL_SHARD, precision="bf16", micro_batch=4, block_size=256, checkpointing=True,
                  overhead_gb=4)
    full = training_memory(shape(LLAMA2_7B, p), **common)
    lora = training_memory(shape(LLAMA2_7B, p), **common, trainable=adapter)
    assert lora["weights"] == full["weights"] == p  # the frozen fp32 master weights, sharded over 4
    assert lora["gradients"] == 4 * adapter / 4 and lora["optimizer"] == 8 * adapter / 4
    assert lora["layer_grads"] == 2 * adapter / 32  # one layer's adapter gradients, unsharded, bf16
    assert {k: lora[k] for k in ("gathered", "activations", "logits", "overhead")} == \
        {k: full[k] for k in ("gathered", "activations", "logits", "overhead")}
    assert round(sum(lora.values()) / GB, 1) == 12.9


def test_a_lora_arm_plans_its_own_jobs_memory_and_small_adapters(tmp_path):
    plan = paper_plan(tmp_path, lambda c: c["finetune"].update(methods=["full", "lora"]), same_jobs=False)
    rules = plan["rules"]
    assert rules["hparam_trial_lora"]["jobs"] == 3 * 6 * 4 and rules["finetune_lora"]["jobs"] == 30
    assert rules["evaluate_lora"]["jobs"] == rules["evaluate_ft"]["jobs"]
    memory = {(m["rule"], m["model"]): m["total_gb"] for m in plan["memory"]}
    assert memory[("finetune_lora", "llama2-7b")] < memory[("finetune", "llama2-7b")] / 2
    # 16 bf16 adapters per model beside the full checkpoints: Llama-2 and Orca-2 39,976,960 parameters each,
    # Mistral (grouped-query attention, a wider MLP) 32 x 16 x (2 x 8192 + 2 x 5120 + 3 x 18432) = 41,943,040
    added = plan["disk"]["checkpoints_gb"] - paper_plan(tmp_path)["disk"]["checkpoints_gb"]
    assert added == pytest.approx(16 * 2 * (2 * 39_976_960 + 41_943_040) / 1e9)


def test_unsharded_7b_training_is_the_issues_108_gb():
    # plain data parallelism: every GPU holds 16 B per parameter (fp32 weights, gradients, AdamW), plus
    # autocast's bf16 copy of the weights; without checkpointing all 32 layers' activations stay
    p = 6_738_415_616
    parts = training_memory(shape(LLAMA2_7B, p), processes=4, dist=Distribution("DDP", None), precision="bf16",
                            micro_batch=4, block_size=256, checkpointing=False, overhead_gb=0)
    assert parts["weights"] + parts["gradients"] + parts["optimizer"] == 16 * p == 107_814_649_856
    assert parts["gathered"] == 2 * p and parts["layer_grads"] == 0
    assert parts["activations"] == 32 * 1024 * 76_800 * 2 == 5_033_164_800
    assert sum(parts.values()) > 80 * GB


def test_eval_memory_llama2_7b_bf16():
    p = 6_738_415_616
    parts = eval_memory(shape(LLAMA2_7B, p), precision="bf16", batch_size=8, tokens=1000, overhead_gb=4)
    assert parts["weights"] == 2 * p == 13_476_831_232
    # keys and values of 32 layers for 8 x 1000 tokens, 4096 wide (32 KV heads of 128), bf16
    assert parts["kv_cache"] == 2 * 2 * 32 * 8000 * 4096 == 4_194_304_000
    assert parts["working_set"] == 2 * 8000 * (2 * 4096 + 3 * 11008) == 659_456_000
    assert parts["logits"] == 8000 * 32_000 * (2 + 4) == 1_536_000_000
    assert sum(parts.values()) == 23_866_591_232
    # Mistral's 8 KV heads: a quarter of the cache
    mistral = eval_memory(shape(MISTRAL_7B, 7_241_732_096), precision="bf16", batch_size=8, tokens=1000,
                          overhead_gb=4)
    assert mistral["kv_cache"] == parts["kv_cache"] / 4


def test_evaluation_tokens_of_a_5shot_k5_cell_by_scorer():
    """config.yaml's estimates for an MMLU task: 60-token questions (400 at most), 10-token options, 4 options,
    200-token chunks (400 at most); 5-shot with the chunks only before the question asked (question_only)."""
    corpus = Corpus({"questions": 100, "question_tokens": 60, "max_question_tokens": 400, "answer_tokens": 10,
                     "tokens_per_chunk": 200, "max_chunk_tokens": 400, "choices": 4})
    prompt = 5 * (60 + 10) + 5 * 200 + 60  # 5 answered examples, 5 chunks, the question: 1,410 tokens
    shared = {"evaluation": {"fewshot_context": "question_only", "shared_prefix": True}}
    stock = {"evaluation": {"fewshot_context": "question_only", "shared_prefix": False}}
    longest = 5 * 70 + 5 * 400 + 400 + 10
    assert eval_requests(shared, corpus, 5, 5) == (100 * (prompt + 4 * 10), longest) == (145_000, 2760)
    assert eval_requests(stock, corpus, 5, 5) == (100 * 4 * (prompt + 10), longest) == (568_000, 2760)


def test_host_memory_to_load_and_save_a_7b_checkpoint():
    p = 6_738_415_616
    # rank 0 loads the fp32 checkpoint once (cpu_ram_efficient_loading); saving gathers the full fp32 state
    # dict (4 B) and casts it to bf16 (2 B): 6 B per parameter, + 4 GB for each of the 4 processes
    assert training_host_memory(shape(LLAMA2_7B, p), processes=4, dist=FULL_SHARD, save_dtype="bf16",
                                process_gb=4) == 6 * p + 16e9 == 56_430_493_696
    # without efficient loading every process loads its own fp32 copy: 4 x 4 B per parameter
    every = Distribution("FULL_SHARD", "bf16", efficient_loading=False)
    assert training_host_memory(shape(LLAMA2_7B, p), processes=4, dist=every, save_dtype="bf16",
                                process_gb=4) == 16 * p + 16e9


# ---- the accelerate config ----------------------------------------------------------------------------

def test_shipped_accelerate_config_is_fsdp_full_shard_without_its_own_precision():
    dist = read_distribution(ROOT / ACCELERATE)
    assert (dist.strategy, dist.mixed_precision, dist.efficient_loading, dist.offload) == \
        ("FULL_SHARD", None, True, False)  # mixed precision: the launch's, from `precision`


@pytest.mark.parametrize("cfg, strategy", [
    ({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2, "fsdp_reshard_after_forward": False}},
     "SHARD_GRAD_OP"),
    ({"distributed_type": "FSDP", "fsdp_config": {"fsdp_sharding_strategy": "FULL_SHARD"}}, "FULL_SHARD"),
    ({"distributed_type": "FSDP", "fsdp_config": {"fsdp_sharding_strategy": 3}}, "NO_SHARD"),
    ({"distributed_type": "MULTI_GPU", "mixed_precision": "bf16"}, "DDP"),
])
def test_accelerate_config_strategies(tmp_path, cfg, strategy):
    path = tmp_path / "acc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert read_distribution(path).strategy == strategy


def test_accelerate_config_errors_name_the_file(tmp_path):
    with pytest.raises(KinjectError, match=r"acc\.yaml: file not found"):
        read_distribution(tmp_path / "acc.yaml")
    (tmp_path / "acc.yaml").write_text("distributed_type: DEEPSPEED\n")
    with pytest.raises(KinjectError, match=r"acc\.yaml: distributed_type 'DEEPSPEED'"):
        read_distribution(tmp_path / "acc.yaml")


# ---- config.yaml --------------------------------------------------------------------------------------

def test_every_7b_training_job_of_config_yaml_fits_80gb_gpus(tmp_path):
    plan = paper_plan(tmp_path)
    assert plan["training"]["distribution"] == "FSDP full shard" and plan["training"]["gradient_checkpointing"]
    training = [m for m in plan["memory"] if m["rule"] in ("hparam_trial", "finetune")]
    assert {(m["rule"], m["model"]) for m in training} == \
        {(r, m) for r in ("hparam_trial", "finetune") for m in ("llama2-7b", "mistral-7b", "orca2-7b")}
    for m in training:
        assert m["gpus"] == 4 and m["fits"] and m["total_gb"] < 80, m
    llama = next(m for m in training if m["rule"] == "finetune" and m["model"] == "llama2-7b")
    assert llama["total_gb"] == pytest.approx(33_969_956_864 / GB)
    # every job of every GPU rule is estimated and fits
    gpu_jobs = [j for j in plan["jobs"] if j["gpus"]]
    assert len(gpu_jobs) == sum(1 for j in plan["jobs"])
    assert all(j["peak_gb_per_gpu"] is not None and j["peak_gb_per_gpu"] <= 80 for j in gpu_jobs)
    assert plan["warnings"] == []


def test_single_gpu_trials_would_not_fit(tmp_path):
    plan = paper_plan(tmp_path, lambda c: c["resources"]["hparam_trial"].update(gpu=1))
    assert any(w.startswith("hparam_trial ") and "more than the 80 GB GPUs" in w for w in plan["warnings"])


def test_fp32_training_gathers_fp32_copies(tmp_path):
    plan = paper_plan(tmp_path, lambda c: c.update(precision="fp32"))
    llama = next(m for m in plan["memory"] if m["rule"] == "finetune" and m["model"] == "llama2-7b")
    assert llama["parts_gb"]["gathered"] == pytest.approx(4 * (262_148_096 + 2 * 202_383_360) / GB)
    assert llama["parts_gb"]["logits"] == pytest.approx(1024 * 32_000 * (4 + 8) / GB)
    assert plan["precision"] == "fp32" and not any("mixed_precision" in w for w in plan["warnings"])


def test_precision_auto_is_planned_as_bf16_and_said_so(tmp_path):
    """The plan is for GPUs: auto resolves to bf16 on one with bf16 (the memory of the bf16 plan), and a note
    says so; save_dtype unset follows it."""
    bf16 = paper_plan(tmp_path / "bf16", lambda c: None)
    auto = paper_plan(tmp_path / "auto", lambda c: (c.update(precision="auto"), c["finetune"].pop("save_dtype")))
    assert auto["precision"] == "bf16" and auto["training"]["save_dtype"] == "bf16"
    assert auto["memory"] == bf16["memory"]
    assert any(n.startswith("precision auto: planned as bf16") for n in auto["notes"])


def test_config_yaml_resources_cover_the_plan(tmp_path):
    """mem_mb and runtime in config.yaml must be at least the plan's estimates x plan.margin."""
    config = load_config(ROOT / "config.yaml")
    plan = make_plan(config, bare_root(tmp_path))
    margin = config["plan"]["margin"]
    for rule, key in RESOURCE_KEY.items():
        entry = plan["rules"].get(rule)
        if entry is None:
            continue
        res = {**config["resources"]["gpu_rules"], **config["resources"].get(key, {})}
        assert entry["mem_mb_needed"] and res["mem_mb"] >= entry["mem_mb_needed"], rule
        assert entry["runtime_needed"] and res["runtime"] >= entry["runtime_needed"], rule
    # finetune by hand, the largest model (Mistral-7B, 7,241,732,096 parameters), 4 processes:
    p = 7_241_732_096
    host = 6 * p + 4 * 4e9  # fp32 state dict + its bf16 copy on rank 0, 4 GB per process
    assert plan["rules"]["finetune"]["mem_mb_needed"] == math.ceil(host * margin["mem"] / MIB) == 85_045
    # the longest finetune job: current events paraphrase set 10, 455 chunks x 11 texts x (200 + BOS/EOS) tokens,
    # 5 epochs (the search's maximum), 8 x P FLOPs per token with checkpointing at 100 TFLOP/s, over 4 GPUs;
    # 10 minutes to start and 5 Trainer checkpoints (12 B/parameter) + the bf16 model written at 1 GB/s.
    # Set 0 of a searched task is no finetune job: the chosen trial's model is its checkpoint (validated_model)
    compute_h = 8 * p * (455 * 11 * 202 * 5) / 100e12 / 3600
    wall = 10 + (5 * 12 * p + 2 * p) / 1e9 / 60 + compute_h * 60 / 4
    job = next(j for j in plan["jobs"] if j["rule"] == "finetune" and j["job"] == "mistral-7b current_events k10")
    assert job["compute_gpu_hours"] == pytest.approx(compute_h)
    assert job["wall_minutes"] == pytest.approx(wall) == pytest.approx(29.69, abs=0.01)
    assert plan["rules"]["finetune"]["runtime_needed"] == math.ceil(wall * margin["runtime"])
    assert not [j for j in plan["jobs"] if j["rule"] == "finetune" and j["job"].endswith(("anatomy k0",
                                                                                          "current_events k0"))]
    # a trial (anatomy, 15,000 chunks x 202 tokens, 5 epochs) also measures the loss on 240 x 2 validation
    # paraphrases (2 x P FLOPs per token) after each epoch, and saves the model after each epoch (bf16, 2 B)
    # beside its 5 Trainer checkpoints
    trial_h = (8 * p * 15_000 * 202 * 5 + 2 * p * 240 * 2 * 202 * 5) / 100e12 / 3600
    trial_wall = 10 + (5 * 12 * p + 5 * 2 * p) / 1e9 / 60 + trial_h * 60 / 4
    job = next(j for j in plan["jobs"] if j["rule"] == "hparam_trial" and j["job"] == "mistral-7b anatomy")
    assert job["wall_minutes"] == pytest.approx(trial_wall) == pytest.approx(55.31, abs=0.01)


def test_the_search_is_not_repeated_and_its_chosen_models_are_the_set_0_checkpoints(tmp_path):
    plan = paper_plan(tmp_path)
    # 3 models x (6 tasks x 5 lr) trials; finetune: the 10 current-events sets 1..10 per model; set 0 of
    # each of the 6 searched tasks is the chosen trial's model (3 x 6 = 18 validated_model jobs, no GPU)
    assert plan["rules"]["hparam_trial"]["jobs"] == 90 and plan["rules"]["finetune"]["jobs"] == 30
    assert plan["rules"]["validated_model"]["jobs"] == 18 and "gpus" not in plan["rules"]["validated_model"]
    # the finetune GPU-hours by hand: 4 GPUs x wall minutes of sets 1..10 of current events, per model
    params = {m: plan["models"][m]["parameters"] for m in ("llama2-7b", "mistral-7b", "orca2-7b")}
    hours = 0.0
    for p in params.values():
        for k in range(1, 11):
            compute_h = 8 * p * (455 * (1 + k) * 202 * 5) / 100e12 / 3600
            hours += 4 * (10 + (5 * 12 * p + 2 * p) / 1e9 / 60 + compute_h * 60 / 4) / 60
    assert plan["rules"]["finetune"]["gpu_hours"] == pytest.approx(hours) == pytest.approx(48.0, abs=0.05)
    # checkpoints on disk: 10 fine-tuned + 6 chosen trial models + the steps-matched control of set 10 per model,
    # bf16 (2 B/parameter)
    assert plan["disk"]["checkpoints_gb"] == pytest.approx(sum(17 * 2 * p for p in params.values()) / GB)
    # the control trains as many tokens as set 10's run, so it is priced as that run (kinject.training.matched)
    assert plan["rules"]["finetune_steps"]["jobs"] == 3
    set_10 = sum(4 * (10 + (5 * 12 * p + 2 * p) / 1e9 / 60 + 8 * p * (455 * 11 * 202 * 5) / 100e12 / 3600 * 60 / 4)
                 / 60 for p in params.values())
    assert plan["rules"]["finetune_steps"]["gpu_hours"] == pytest.approx(set_10)


def test_resources_below_the_plan_are_warnings(tmp_path):
    plan = paper_plan(tmp_path, lambda c: c["resources"]["finetune"].update(mem_mb=20_000, runtime=30))
    assert any(w.startswith("finetune: resources.finetune.mem_mb 20000 is below") for w in plan["warnings"])
    assert any(w.startswith("finetune: resources.finetune.runtime 30 min is below") for w in plan["warnings"])


RULE_MEMORY = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
                      config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[1:]]),
                      snakefile=Path("Snakefile"), workdir=Path("."))
    mem = {r.name: r.resources.get("mem_mb") for r in wf._workflow.rules if "gpu" in r.resources}
    print(json.dumps({name: getattr(mb, "value", mb) for name, mb in mem.items()}))
"""


def test_resource_keys_are_the_rules_own(tmp_path):
    """RESOURCE_KEY names the resources entry each GPU rule (a rule with a gpu resource) reads, as Snakemake
    parsed the rules: every entry gets its own mem_mb, and each rule's mem_mb says which entry it read (the
    extended demo, with a LoRA arm and a control, and every registered retriever listed, has every GPU rule)."""
    import subprocess
    import sys

    import yaml

    marks = {"gpu_rules": 101_000, "hparam_trial": 102_000, "finetune": 103_000, "evaluate": 104_000}
    edit = {"resources": {key: {"mem_mb": mb} for key, mb in marks.items()},
            "retrieval": {"retrievers": ["dense", "bm25", "hybrid", "rerank", "oracle"],
                          "rerank": {"model": "org/cross-encoder"}}}
    (tmp_path / "marks.yaml").write_text(yaml.safe_dump(edit))
    proc = subprocess.run([sys.executable, "-c", RULE_MEMORY, "config/demo.yaml", "config/demo_extended.yaml",
                           str(tmp_path / "marks.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    memory = json.loads(proc.stdout.strip().splitlines()[-1])
    read = {rule: key for rule, mb in memory.items() for key, mark in marks.items() if mb == mark}
    assert read == RESOURCE_KEY


# ---- corpus from the artifacts, LLM calls -------------------------------------------------------------

def test_artifacts_replace_the_estimates_and_llm_calls_follow_the_code(tmp_path):
    from kinject.qa.paraphrases import _plan as paraphrase_calls

    root = bare_root(tmp_path)
    config = load_config(ROOT / "config.yaml")
    before = make_plan(config, root)
    # the demo's artifacts (results/ itself: no study) are not the paper's (results/paper): the plan is unchanged
    demo = root / "results" / "current_events"
    demo.mkdir(parents=True)
    pd.DataFrame({"chunk_id": ["d0"], "text": ["d" * 100]}).to_parquet(demo / "chunks.parquet")
    assert make_plan(config, root)["corpus"] == before["corpus"]
    chunks = pd.DataFrame({"chunk_id": ["c0", "c1", "c2"], "text": ["a" * 400, "b" * 800, "c" * 1200]})
    own = root / "results" / "paper" / "current_events"
    own.mkdir(parents=True)
    chunks.to_parquet(own / "chunks.parquet")
    pd.DataFrame({"id": ["q0", "q1", "d0"], "question": ["x" * 33, "y" * 73, "z"],
                  "choices": [["a1", "b1", "c1", "d1"], ["a2", "b2", "c2", "d2"], ["e", "f"]],
                  "answer": [0, 1, 0], "split": ["test", "test", "dev"], "chunk_id": ["c0", "c1", None]}
                 ).to_parquet(own / "questions.parquet")
    plan = make_plan(config, root)
    corpus = plan["corpus"]["current_events"]
    # 400, 800, 1200 characters at 4 per token
    assert (corpus["figures"]["chunks"], corpus["figures"]["tokens_per_chunk"],
            corpus["figures"]["max_chunk_tokens"]) == (3, 200, 300)
    assert corpus["sources"]["chunks"].endswith("results/paper/current_events/chunks.parquet")
    # two test questions: 'Question: ' + 33 / 73 characters + '\nAnswer:' = 51 / 91 characters
    assert corpus["figures"]["questions"] == 2
    assert corpus["figures"]["max_question_tokens"] == math.ceil(91 / 4)
    assert plan["corpus"]["anatomy"]["sources"]["chunks"] == "plan.corpus.default"

    rows = {r["rule"]: r for r in plan["llm"]["rules"] if r["task"] == "current_events"}
    count, per_call = config["paraphrases"]["count"], config["paraphrases"]["per_call"]
    assert rows["paraphrase_chunks"]["calls"] == len(paraphrase_calls(chunks, count, per_call, 0)) == 3 * 2
    assert rows["generate_questions"]["calls"] == rows["select_questions"]["calls"] == 3
    template = math.ceil(len(prompts.PARAPHRASE.format(n=5, text="")) / 4)
    assert rows["paraphrase_chunks"]["input_tokens"] == 6 * (template + 200)
    assert rows["paraphrase_chunks"]["output_tokens"] == 3 * 10 * 200  # 10 paraphrases as long as their chunk
    asked = math.ceil(len(prompts.QUESTIONS.format(n=4, options=4, text="")) / 4)
    assert rows["generate_questions"]["input_tokens"] == 3 * (asked + 200)
    assert rows["generate_questions"]["output_tokens"] == 3 * 4 * 80
    # gpt-4 at USD 30 / 60 per million input / output tokens
    assert rows["paraphrase_chunks"]["usd"] == pytest.approx((6 * (template + 200) * 30 + 6000 * 60) / 1e6)
    # validation: 240 chunks x 1 call (2 paraphrases per call) per MMLU task, from the estimates
    val = next(r for r in plan["llm"]["rules"] if r["rule"] == "validation_paraphrases" and r["task"] == "anatomy")
    assert val["calls"] == 240 and val["output_tokens"] == 240 * 2 * 200


def test_unknown_figures_say_how_to_provide_them(tmp_path):
    (tmp_path / TINY_DEMO).parent.mkdir(parents=True)
    (tmp_path / TINY_DEMO).write_text(yaml.safe_dump(tiny_demo()))
    config = load_config(tmp_path / TINY_DEMO)
    (tmp_path / DEMO_ACCELERATE).parent.mkdir(parents=True)
    shutil.copy(ROOT / DEMO_ACCELERATE, tmp_path / DEMO_ACCELERATE)
    plan = make_plan(config, tmp_path)
    assert "results/models/tiny-llama/base" in plan["models"]["tiny-llama"]["source"]
    assert "models.tiny-llama.shape" in plan["models"]["tiny-llama"]["source"]
    assert plan["rules"]["finetune"]["peak_gb_per_gpu"] is None
    assert any("plan.corpus.atlas.chunks" in n for n in plan["rules"]["hparam_trial"]["notes"])  # atlas: set 0 only
    # a built model folder gives the shape (parameters by the Llama formula)
    base = tmp_path / "results" / "models" / "tiny-llama" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 384, "vocab_size": 4096, "max_position_embeddings": 1024,
        "tie_word_embeddings": False}))
    plan = make_plan(config, tmp_path)
    # 2 x 4096 x 128 + 4 x (4 x 128^2 + 3 x 128 x 384 + 2 x 128) + 128
    assert plan["models"]["tiny-llama"]["parameters"] == 1_048_576 + 4 * (65_536 + 147_456 + 256) + 128
    (base / "config.json").write_text(json.dumps({"model_type": "gpt2", "hidden_size": 1}))
    with pytest.raises(KinjectError, match="config.json: not a model config.json"):
        make_plan(config, tmp_path)


# ---- the command --------------------------------------------------------------------------------------

def test_command_prints_the_tables_and_json(tmp_path, capsys):
    root = bare_root(tmp_path)
    main(["plan", str(ROOT / "config.yaml"), "--root", str(root)])
    out = capsys.readouterr().out
    assert "FSDP full shard" in out and "WARNINGS" not in out
    line = next(row for row in out.splitlines() if row.split()[:2] == ["finetune", "llama2-7b"])
    assert re.search(r"\s34\.0\s+yes\s+current_events k1$", line), line
    power = {" ".join(row.split()[1:4]): row for row in out.splitlines() if row.startswith("  current_events ")
             and " vs " in row}
    assert re.search(r"\s910\s+455\s+1\s", power["FT vs Base"]), power["FT vs Base"]  # seeds: one
    assert re.search(r"\s910\s+455\s+-\s", power["RAG vs Base"]), power["RAG vs Base"]  # none trained
    assert "plan.seed_sd 0.05" in out
    main(["plan", str(ROOT / "config.yaml"), "--root", str(root), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["rules"]["finetune"]["jobs"] == 30 and data["rules"]["hparam_trial"]["gpus"] == 4


def test_a_dag_snakemake_cannot_build_is_one_line():
    """The jobs are Snakemake's: a knowledge base whose dump is missing stops the plan as it stops a dry run."""
    config = load_config(ROOT / "config" / "demo.yaml")
    config["tasks"]["atlas"]["knowledge_base"]["path"] = "resources/no_such_dump.xml"
    with pytest.raises(KinjectError, match="Missing input files for rule fetch.*resources/no_such_dump.xml") as err:
        make_plan(config, ROOT)
    assert "\n" not in str(err.value)


def test_command_imports_no_torch(tmp_path):
    code = ("import sys; from kinject.cli import main; main(['plan', 'config.yaml', '--json']); "
            "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'openai') if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_llm_worst_case_is_every_reply_at_its_max_tokens_and_every_retry(tmp_path):
    """The plan's worst case uses the requests' own bounds (kinject.qa.llm, llm.max_tokens): here 3 chunks of
    400, 800, 1200 characters, config.yaml's 10 paraphrases in 2 calls of 5, 4 questions a chunk, 2 re-asks."""
    root = bare_root(tmp_path)
    chunks = pd.DataFrame({"chunk_id": ["c0", "c1", "c2"], "text": ["a" * 400, "b" * 800, "c" * 1200]})
    (root / "results" / "paper" / "current_events").mkdir(parents=True)
    chunks.to_parquet(root / "results" / "paper" / "current_events" / "chunks.parquet")
    config = load_config(ROOT / "config.yaml")
    config["llm"]["max_tokens"] = {"question": 100, "selection": 30, "paraphrase": 2.0, "chars_per_token": 4.0,
                                   "overhead": 10}
    plan = make_plan(config, root)
    rows = {r["rule"]: r for r in plan["llm"]["rules"] if r["task"] == "current_events"}
    assert config["llm"]["invalid_retries"] == 2
    # a mean chunk of 200 tokens = 800 characters; per call 5 paraphrases x 200 tokens x 2 + 10
    assert rows["paraphrase_chunks"]["worst_output_tokens"] == 3 * 3 * 2 * (5 * 200 * 2 + 10)
    assert rows["generate_questions"]["worst_output_tokens"] == 3 * 3 * (4 * 100 + 10)
    assert rows["select_questions"]["worst_output_tokens"] == 3 * 3 * (30 + 10)
    assert rows["generate_questions"]["worst_input_tokens"] == 3 * rows["generate_questions"]["input_tokens"]
    assert rows["generate_questions"]["worst_usd"] == pytest.approx(
        (rows["generate_questions"]["worst_input_tokens"] * 30 + 3 * 3 * 410 * 60) / 1e6)
    assert "worst USD" in format_plan(plan)


# ---- power --------------------------------------------------------------------------------------------

def test_the_minimum_detectable_difference_is_the_two_proportion_formula_worked_by_hand():
    """n = 910 per cell, two-sided 0.05, 80% power: Cohen's h = (z_.975 + z_.8) * sqrt(2 / 910) = 2.8016 * 0.04688
    = 0.13134; p1 = sin(asin(sqrt(.5)) + h / 2)^2 = sin(0.85107)^2 = 0.56564: an MDD of 0.0656 around 0.5."""
    from scipy.stats import norm

    from kinject.planning.power import mdd

    h = (norm.ppf(0.975) + norm.ppf(0.8)) * math.sqrt(2 / 910)
    assert h == pytest.approx(0.13134, abs=1e-5)
    assert mdd(910, 0.05) == pytest.approx(math.sin(math.pi / 4 + h / 2) ** 2 - 0.5, rel=1e-4)
    assert mdd(910, 0.05) == pytest.approx(0.0656, abs=5e-4)
    assert mdd(455, 0.05) > mdd(910, 0.05) > mdd(910, 0.5)  # fewer units or a stricter level: a larger MDD


def test_power_counts_the_grids_comparisons_per_family_and_warns_below_the_papers_effects(tmp_path):
    """config.yaml: 5 MMLU tasks x 3 models x 2 shots x 2 formats = 12 settings each with 4 contrasts (RAG vs Base,
    FT vs Base, RAG vs FT, FT+RAG vs RAG: set 0 only); current events 3 models x 1 shot x 2 formats = 6 settings
    with those 4, FT-par10+RAG vs RAG, FT-par{1..10} vs FT (10 each), and the steps-matched control's FT-par10 vs
    FT-steps10 and FT-steps10 vs FT: 5 x 4 x 12 + 6 x 5 + 60 + 6 x 2 = 342."""
    plan = paper_plan(tmp_path)
    rows = {(r["task"], r["family"]): r for r in plan["power"]}
    assert rows[("anatomy", "RAG vs Base")]["comparisons"] == 12
    assert rows[("current_events", "FT-par vs FT")]["comparisons"] == 60
    assert rows[("current_events", "FT-par vs FT-steps")]["comparisons"] == 6
    assert rows[("current_events", "FT-steps vs FT")]["comparisons"] == 6
    assert sum(r["comparisons"] for r in plan["power"]) == 342
    ce = rows[("current_events", "FT-par vs FT")]
    assert (ce["questions"], ce["clusters"]) == (910, 455)  # plan.corpus: 910 questions, 2 kept per chunk
    assert ce["alpha"] == pytest.approx(0.05 / 342)
    assert ce["mdd_lenient"] < ce["mdd_questions"] < ce["mdd_clusters"]
    assert rows[("anatomy", "RAG vs Base")]["paper_effect"] is None  # the paper's Table 2 is current events'
    assert ce["paper_effect"] == pytest.approx(0.055)  # Orca-2's FT-par vs FT, the smallest of three
    warned = {w.split(":")[1].strip() for w in plan["power_warnings"]}
    assert warned == {"FT vs Base", "FT-par+RAG vs RAG", "FT-par vs FT"}  # RAG's effects (.232+) are detectable
    assert plan["warnings"] == []  # not resource warnings


def test_training_seeds_multiply_the_seeded_runs_jobs_and_gpu_hours(tmp_path):
    """finetune.seeds [1234, 1, 2] on current events' FT set 0 and 10 and the control of set 10: two more runs of
    each per model, each priced as the run it repeats (set 0 now trained, not adopted: the search's epochs)."""
    def seeded(config):
        config["finetune"].update(seeds=[config["seed"], 1, 2], seed_tasks=["current_events"],
                                  seed_methods=["full", "steps"], seed_sets=[0, 10])

    plan = paper_plan(tmp_path, seeded, same_jobs=False)
    params = [plan["models"][m]["parameters"] for m in ("llama2-7b", "mistral-7b", "orca2-7b")]

    def run_hours(p, k):  # 4 GPUs x wall minutes of set k's run (5 epochs: the search's), as the test above
        return 4 * (10 + (5 * 12 * p + 2 * p) / 1e9 / 60 + 8 * p * (455 * (1 + k) * 202 * 5) / 100e12 / 3600 * 60 / 4) / 60

    unseeded = sum(run_hours(p, k) for p in params for k in range(1, 11))
    assert plan["rules"]["finetune"]["jobs"] == 30 + 3 * 2 * 2
    assert plan["rules"]["finetune"]["gpu_hours"] == pytest.approx(
        unseeded + 2 * sum(run_hours(p, 0) + run_hours(p, 10) for p in params))
    assert plan["rules"]["finetune_steps"]["jobs"] == 3 * 3
    assert plan["rules"]["finetune_steps"]["gpu_hours"] == pytest.approx(3 * sum(run_hours(p, 10) for p in params))
    assert plan["rules"]["hparam_trial"]["jobs"] == 90  # the search is not repeated per seed
    # each extra seed's model is scored as the run seed's (FT, K = 0): one shot count x 2 formats, per model
    assert plan["rules"]["evaluate_ft"]["jobs"] == paper_plan(tmp_path)["rules"]["evaluate_ft"]["jobs"] + 3 * 2 * 2 * 2


def test_training_seeds_add_their_variance_to_the_mdd_worked_by_hand():
    """100 questions, plan.seed_sd 0.05, a comparison of two trained columns over 3 seeds: the difference's
    variance on NormalIndPower's arcsine scale is 2/n + 4 t sigma^2 / S = 2/100 + 4 * 2 * 0.0025 / 3 = 0.026667,
    i.e. 2/75: the questions-only formula at n_e = 75 units. h = (z_.975 + z_.8) * sqrt(2/75) = 2.80158 * 0.16330
    = 0.45750; the MDD around 0.5 is sin(pi/4 + h/2)^2 - 0.5 = sin(h) / 2 = 0.2209 (0.1930 for the questions alone).
    One trained side, one seed: 2/100 + 4 * 0.0025 = 0.03, n_e = 66.67. sigma = 0: the questions-only MDD."""
    from scipy.stats import norm
    from statsmodels.stats.power import NormalIndPower

    from kinject.planning.power import effective_n, mdd

    assert effective_n(100, 0.05, seeds=3, trained=2) == pytest.approx(75.0)
    assert effective_n(100, 0.05, seeds=1, trained=1) == pytest.approx(200 / 3)
    assert effective_n(100, 0.0, seeds=1, trained=2) == 100 and effective_n(100, 0.05, seeds=3, trained=0) == 100
    h = (norm.ppf(0.975) + norm.ppf(0.8)) * math.sqrt(2 / 100 + 4 * 2 * 0.05 ** 2 / 3)
    assert h == pytest.approx(0.45750, abs=1e-5)
    assert mdd(effective_n(100, 0.05, 3, 2), 0.05) == pytest.approx(math.sin(h) / 2, rel=1e-4)
    assert mdd(effective_n(100, 0.05, 3, 2), 0.05) == pytest.approx(0.2209, abs=5e-4)
    assert mdd(100, 0.05) == pytest.approx(0.1930, abs=5e-4)
    # statsmodels' own power of the two-sample test at that effect and n_e: 80%
    assert NormalIndPower().power(effect_size=h, nobs1=75, alpha=0.05) == pytest.approx(0.80, abs=1e-3)


def test_power_rows_count_each_comparisons_training_seeds():
    """The extended demo trains current events' FT (set 0), FT-par10 and FT-steps10 under 3 seeds: FT vs Base and
    FT-par10 vs FT are averaged over 3 seeds (1 and 2 trained sides), FT-par2 vs FT over 1 (paired on the run's
    seed: set 2 has one), FT+RAG (bm25) vs FT+RAG over 1 (another retriever's cells: the run seed's model only),
    RAG vs Base over none; each MDD is the closed form with t sigma^2 / S added, the untrained ones the
    questions-only figure."""
    from scipy.stats import norm

    from kinject.planning.power import BH_Q, mdd, power_rows

    config = load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")
    config["plan"]["seed_sd"] = 0.07
    rows, _ = power_rows(config, {t: {"questions": 68} for t in config["tasks"]})
    ce = {}
    for r in rows:
        if r["task"] == "current_events":
            ce.setdefault(r["family"], {})[r["seeds"]] = r
    assert set(ce["FT-par vs FT"]) == {1, 3} and ce["FT-par vs FT"][3]["comparisons"] == 1
    assert set(ce["FT vs Base"]) == {3} and set(ce["RAG vs Base"]) == {None}
    assert set(ce["FT+RAG (bm25) vs FT+RAG"]) == {1} and set(ce["LoRA vs Base"]) == {1}
    z = norm.ppf(1 - BH_Q / 2) + norm.ppf(0.8)

    def closed_form(t, s):
        return math.sin(z * math.sqrt(2 / 68 + 4 * t * 0.07 ** 2 / s)) / 2

    for family, seeds, trained in (("FT-par vs FT", 3, 2), ("FT-par vs FT", 1, 2), ("FT vs Base", 3, 1),
                                   ("LoRA vs Base", 1, 1), ("RAG vs Base", None, 0)):
        row = ce[family][seeds]
        assert row["trained_sides"] == trained
        assert row["mdd_lenient"] == pytest.approx(closed_form(trained, seeds or 1), rel=1e-4), (family, seeds)
    assert ce["RAG vs Base"][None]["mdd_questions"] == pytest.approx(mdd(68, ce["RAG vs Base"][None]["alpha"]))
    assert ce["FT-par vs FT"][3]["mdd_questions"] < ce["FT-par vs FT"][1]["mdd_questions"]  # more seeds, less
