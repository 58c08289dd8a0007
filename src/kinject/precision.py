"""The compute precision of a job: the config's `precision` (auto, bf16 or fp32) resolved on the device it runs on.

``auto`` is bf16 where the device computes it natively (a CUDA GPU with bf16; a CPU with AVX512_BF16 or AMX)
and fp32 elsewhere. On a CPU without them torch emulates bf16: SmolLM2-135M training ran >11x slower in
bf16 than in fp32 on an AVX2-only CPU (issue #31's measurement; bench/results.md has the host's own row),
where a CPU with AVX512_BF16 trains 2x faster in bf16. The choice is made where the job runs (a SLURM
head node without a GPU must not decide for the GPU nodes), once per job, logged once, and written into what
the job makes (score files, checkpoints' ``training.json``), so a table says which precision produced it.
The config keeps ``auto`` as the rules' param: moving a run to another kind of machine re-runs nothing.

The accelerate launch's ``--mixed_precision`` and ``finetune.save_dtype`` (unless set) follow from it: one key.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from kinject.errors import KinjectError

log = logging.getLogger(__name__)

AUTO = "auto"
CHOICES = (AUTO, "bf16", "fp32")
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # a resolved precision -> torch dtype name
MIXED_PRECISION = {"bf16": "bf16", "fp32": "no"}  # a resolved precision -> accelerate's --mixed_precision
# what an explicit bf16 costs on a CPU that emulates it (issue #31, SmolLM2-135M, one AdamW step, 2 threads)
EMULATED_COST = ">11x slower than fp32 (SmolLM2-135M training on an AVX2-only CPU)"


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (bf16 or fp32) for ``requested`` on ``device`` (cpu or cuda), and why."""

    name: str
    requested: str
    device: str
    hardware: str  # the CPU's bf16 instructions or the GPU's name
    native_bf16: bool

    @property
    def record(self) -> dict:
        """What a score file or checkpoint records of it."""
        return {"precision": self.name, "precision_requested": self.requested, "device": self.device,
                "hardware": self.hardware}

    @property
    def note(self) -> str:
        """One line for the log: ``precision fp32 (auto) on cpu (AVX2, no native bf16)``."""
        asked = f" ({self.requested})" if self.requested != self.name else ""
        return f"precision {self.name}{asked} on {self.device} ({self.hardware})"


def cpu_bf16() -> tuple[bool, str]:
    """(native bf16, a label): whether this CPU has AVX512_BF16 or AMX (torch's own cpuinfo probe) and torch
    may use them, and what it has ("AMX", "AVX512_BF16", else torch's vector capability, e.g. "AVX2", with
    "no native bf16"). torch limited to fewer instructions (ATEN_CPU_CAPABILITY=avx2 or default, which
    oneDNN's bf16 kernels follow when ONEDNN_MAX_CPU_ISA is set alike) emulates bf16 as a CPU without them
    does: that is not native either, and the label says why."""
    import torch

    hardware = "AMX" if torch.cpu._is_amx_tile_supported() else (
        "AVX512_BF16" if torch.cpu._is_avx512_bf16_supported() else None)
    capability = torch.backends.cpu.get_cpu_capability()
    if hardware is None:
        return False, f"{capability}, no native bf16"
    if not capability.startswith("AVX512"):
        return False, f"{hardware} present, torch limited to {capability} (ATEN_CPU_CAPABILITY): no native bf16"
    return True, hardware


def gpu_bf16() -> tuple[bool, str]:
    """(bf16 supported, the GPU's name) of the current CUDA device."""
    import torch

    return bool(torch.cuda.is_bf16_supported()), torch.cuda.get_device_name()


def check_choice(requested: str, where: str = "precision") -> str:
    if requested not in CHOICES:
        raise KinjectError(where, f"must be one of {', '.join(CHOICES)}, got {requested!r}")
    return requested


def resolve(requested: str, device: str) -> Precision:
    """``requested`` (auto, bf16, fp32) on ``device`` ("cpu" or "cuda"), logged once per process and choice.

    bf16 asked on a GPU without it is a one-line error (never a silent fp32); on a CPU without native bf16 it
    runs, emulated, with a one-line warning of its measured cost.
    """
    check_choice(requested)
    native, hardware = gpu_bf16() if device == "cuda" else cpu_bf16()
    if requested == AUTO:
        name = "bf16" if native else "fp32"
    else:
        name = requested
    if name == "bf16" and device == "cuda" and not native:
        raise KinjectError("precision", f"bf16 is not supported by {hardware}; set precision: fp32 (or auto)")
    chosen = Precision(name, requested, device, hardware, native)
    _log_once(chosen)
    return chosen


@functools.cache
def _log_once(chosen: Precision) -> None:
    if chosen.name == "bf16" and chosen.device == "cpu" and not chosen.native_bf16:
        log.warning("precision bf16 on a CPU without native bf16 (%s): emulated, %s; precision: auto runs fp32 "
                    "here", chosen.hardware, EMULATED_COST)
    else:
        log.info("%s", chosen.note)


def save_dtype(requested: str | None, precision: str) -> str:
    """``finetune.save_dtype`` if set, else the resolved precision's (bf16 runs save bf16, fp32 runs fp32)."""
    if requested in (None, AUTO):
        return precision
    if requested not in DTYPES:
        raise KinjectError("finetune.save_dtype", f"must be one of auto, {', '.join(DTYPES)}, got {requested!r}")
    return requested


def torch_dtype(precision: str):
    """The torch dtype of a resolved precision (bf16 or fp32)."""
    import torch

    if precision not in DTYPES:
        raise KinjectError("precision", f"{precision!r} is not a resolved precision ({', '.join(DTYPES)})")
    return getattr(torch, DTYPES[precision])
