"""Measurements inside the training process that bench/gpu_check.py launches the way rule finetune does.

Python imports ``sitecustomize`` at start-up from the path; gpu_check puts this folder first on PYTHONPATH for
the launch, so every process of it (accelerate's launcher, torchrun's agent, the trainer) loads this file, and
nothing of the launched code changes. Only with KINJECT_GPU_CHECK_STATS set (a folder) does it do anything:
it times every optimizer step (a global post-step hook of torch.optim, after a CUDA synchronize) and, at exit,
a process that stepped writes ``stats-<pid>.json``: the step end times, torch.cuda.max_memory_allocated and
max_memory_reserved, peak RSS and accelerate's distributed type. With KINJECT_GPU_CHECK_STOP_AFTER=N the
process writes them and exits 0 right after step N, before the Trainer's checkpoint (a 7B model's weights and
AdamW state, 81 GB, do not fit the device machine's disk).
"""

import os

_OUT = os.environ.get("KINJECT_GPU_CHECK_STATS")

if _OUT:
    import atexit
    import json
    import resource
    import sys
    import time

    _START = time.time()
    _STEPS: list[float] = []
    _STOP = int(os.environ.get("KINJECT_GPU_CHECK_STOP_AFTER") or 0)

    def _stats() -> dict:
        out = {"pid": os.getpid(), "rank": os.environ.get("RANK"), "start": _START, "steps": _STEPS,
               "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "stopped_after": _STOP or None}
        state = sys.modules.get("accelerate.state")
        if state is not None:
            kind = (state.AcceleratorState._shared_state.get("distributed_type")
                    or state.PartialState._shared_state.get("distributed_type"))
            out["distributed_type"] = str(getattr(kind, "value", kind))
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            out.update(max_allocated=torch.cuda.max_memory_allocated(), max_reserved=torch.cuda.max_memory_reserved(),
                       total_memory=torch.cuda.get_device_properties(0).total_memory)
        return out

    def _write() -> None:
        if not _STEPS:  # the launcher and the agent: they train nothing
            return
        path = os.path.join(_OUT, f"stats-{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(_stats(), fh)
        os.replace(path + ".tmp", path)

    atexit.register(_write)

    def _after_step(optimizer, args, kwargs) -> None:
        torch = sys.modules["torch"]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        _STEPS.append(time.time())
        if _STOP and len(_STEPS) >= _STOP:
            _write()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(_after_step)
