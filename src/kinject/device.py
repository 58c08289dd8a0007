"""Where a job computes: the GPU it was given (or a loud refusal), its CPU threads (its precision: kinject.precision).

Every compute job calls these through ``kinject.cli.rule_main`` (or the fine-tuning entry point), so a
job asking for a GPU never runs on the CPU by accident, and torch uses exactly the cores the job holds.
"""

from __future__ import annotations

import logging
import os

from kinject.errors import KinjectError

log = logging.getLogger(__name__)


def check_gpu(gpus: int, allow_cpu: bool, where) -> str:
    """The device a job runs on: 'cuda' when it was given GPUs and CUDA works; 'cpu' when it asked for none.

    A job that asked for no GPU is given none, like a SLURM job allocated none: CUDA_VISIBLE_DEVICES is set
    empty in its process (and so in what it launches, e.g. ``accelerate launch``) before anything touches
    CUDA, so every library in it (lm-eval, transformers, sentence-transformers) sees only the CPU, even on a
    GPU host where Snakemake's local scheduler does not count the GPU as taken. A job that asked for GPUs but
    sees no CUDA fails with one line, unless ``resources.allow_cpu`` is set (then the CPU run is logged), so a
    misconfigured node never silently runs a 7B job on CPU.
    """
    if gpus <= 0:
        if os.environ.get("CUDA_VISIBLE_DEVICES") != "":
            log.info("the job asked for no GPU: CUDA_VISIBLE_DEVICES set empty, it runs on the CPU")
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if not allow_cpu:
        raise KinjectError(where, f"the job asked for {gpus} GPU(s) but CUDA is not available "
                                  f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                                  "set resources.allow_cpu: true to run GPU rules on the CPU")
    log.warning("the job asked for %d GPU(s); CUDA is not available, running on the CPU (resources.allow_cpu)", gpus)
    return "cpu"


def use_threads(threads: int) -> int:
    """Give torch (and the BLAS/OpenMP pools Snakemake sizes by OMP_NUM_THREADS) the job's threads, and the
    tokenizers' Rust pool as many (RAYON_NUM_THREADS, read when it first tokenizes in parallel): without it,
    that pool takes every core of the node, whatever the job holds."""
    import torch

    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    return torch.get_num_threads()  # what torch now uses, read back
