"""precision: auto, bf16 or fp32, resolved on the device a job runs on (kinject.precision), on both kinds of CPU
and on GPUs with and without bf16, each faked: no test here depends on the host's own CPU."""

import logging

import pandas as pd
import pytest
import torch

from kinject import precision as precisions
from kinject.errors import KinjectError
from kinject.reporting.report import precision_line

NATIVE, AVX2 = (True, "AVX512_BF16"), (False, "AVX2, no native bf16")


@pytest.fixture
def cpu(monkeypatch):
    """Fake this host's CPU: cpu(NATIVE) or cpu(AVX2)."""
    return lambda kind: monkeypatch.setattr(precisions, "cpu_bf16", lambda: kind)


@pytest.fixture
def gpu(monkeypatch):
    def fake(bf16: bool, name: str):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: name)
    return fake


@pytest.mark.parametrize("kind, expected", [(NATIVE, "bf16"), (AVX2, "fp32")])
def test_auto_is_bf16_where_the_cpu_has_it_natively_and_fp32_elsewhere(cpu, kind, expected):
    cpu(kind)
    chosen = precisions.resolve("auto", "cpu")
    assert (chosen.name, chosen.requested, chosen.device, chosen.hardware) == (expected, "auto", "cpu", kind[1])
    assert chosen.record == {"precision": expected, "precision_requested": "auto", "device": "cpu",
                             "hardware": kind[1]}
    assert chosen.note == f"precision {expected} (auto) on cpu ({kind[1]})"
    assert precisions.save_dtype(None, chosen.name) == precisions.save_dtype("auto", chosen.name) == expected


@pytest.mark.parametrize("kind", [NATIVE, AVX2])
def test_an_explicit_precision_is_kept_on_either_cpu(cpu, kind):
    cpu(kind)
    assert precisions.resolve("fp32", "cpu").name == "fp32"
    assert precisions.resolve("bf16", "cpu").name == "bf16"  # emulated where not native: asked for, so run


def test_explicit_bf16_on_a_cpu_that_emulates_it_is_one_warning_with_its_cost(cpu, caplog):
    cpu(AVX2)
    precisions._log_once.cache_clear()
    with caplog.at_level(logging.INFO, logger="kinject.precision"):
        precisions.resolve("bf16", "cpu")
        precisions.resolve("bf16", "cpu")  # a job resolves it more than once: said once
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "precision bf16 on a CPU without native bf16 (AVX2, no native bf16): emulated, >11x slower than fp32 "
        "(SmolLM2-135M training on an AVX2-only CPU); precision: auto runs fp32 here"]
    caplog.clear()
    cpu(NATIVE)
    with caplog.at_level(logging.INFO, logger="kinject.precision"):
        precisions.resolve("bf16", "cpu")
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # native: no warning


def test_gpus_with_and_without_bf16(gpu):
    gpu(True, "NVIDIA H100 80GB HBM3")
    assert precisions.resolve("auto", "cuda").name == precisions.resolve("bf16", "cuda").name == "bf16"
    gpu(False, "Tesla V100-SXM2-32GB")
    assert precisions.resolve("auto", "cuda").name == "fp32"
    with pytest.raises(KinjectError) as err:  # asked for, not there: never a silent fp32
        precisions.resolve("bf16", "cuda")
    assert str(err.value) == "precision: bf16 is not supported by Tesla V100-SXM2-32GB; set precision: fp32 (or auto)"


def test_bad_values_are_one_line():
    with pytest.raises(KinjectError, match=r"^precision: must be one of auto, bf16, fp32, got 'fp16'$"):
        precisions.resolve("fp16", "cpu")
    with pytest.raises(KinjectError, match=r"^finetune.save_dtype: must be one of auto, fp32, bf16, got 'fp16'$"):
        precisions.save_dtype("fp16", "fp32")
    with pytest.raises(KinjectError, match="'auto' is not a resolved precision"):
        precisions.torch_dtype("auto")
    assert precisions.save_dtype("bf16", "fp32") == "bf16"  # set: kept
    assert precisions.torch_dtype("bf16") is torch.bfloat16


def test_the_host_probe_reads_torchs_cpu_flags(monkeypatch):
    """cpu_bf16 itself, with torch's cpuinfo probe faked both ways (the real one answers for this host only)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert precisions.cpu_bf16() == (False, "AVX2, no native bf16")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precisions.cpu_bf16() == (False, "AMX present, torch limited to AVX2 (ATEN_CPU_CAPABILITY): no native bf16")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert precisions.cpu_bf16() == (True, "AMX")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert precisions.cpu_bf16() == (True, "AVX512_BF16")


def test_a_table_says_what_precision_its_cells_ran_in(caplog):
    one = pd.DataFrame({"precision": ["fp32", "fp32"], "hardware": ["AVX2, no native bf16"] * 2})
    assert precision_line(one).startswith("Scored in fp32 (AVX2, no native bf16);")
    mixed = pd.DataFrame({"precision": ["fp32", "bf16", "bf16"],
                          "hardware": ["AVX2, no native bf16", "AVX512_BF16", "AVX512_BF16"]})
    with caplog.at_level(logging.WARNING, logger="kinject.reporting.report"):
        line = precision_line(mixed)
    assert line == ("Scored in different precisions (re-run on one kind of machine to compare cells): "
                    "bf16 (AVX512_BF16): 2 cells; fp32 (AVX2, no native bf16): 1 cells.")
    assert "different precisions" in caplog.text


def test_the_manifest_records_the_precision_asked_and_what_it_is_here(cpu, monkeypatch):
    from kinject.provenance.manifest import precision_record

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu(AVX2)
    assert precision_record("auto") == {"requested": "auto", "on_this_host": {
        "precision": "fp32", "precision_requested": "auto", "device": "cpu", "hardware": "AVX2, no native bf16"}}
