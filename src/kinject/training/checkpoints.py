"""What a training run resumes from: the Trainer's checkpoints in the job's work folder, trusted only when
whole (weights verified against their index or header), and the run they belong to (``run.json``)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from kinject import precision as precisions
from kinject.io import write_json, write_text
from kinject.weights import shard_problem

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
# what a saved model or adapter records of the run that made it: its precision, device, save dtype
TRAINING_FILE = "training.json"
EPOCHS_DIR = "epochs"  # a search trial's epoch models, in its work folder


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is not whole (its header unreadable, or its size not the one the header gives),
    or None. Only the header is read: a truncated write (a node lost before the page cache reached the disk,
    a full disk, a partial copy) shows as a short file, and resuming from it crashes every rerun."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else None
        if length is None or length > size - 8:
            return f"{path.name} is truncated ({size} bytes, its header cut)"
        try:
            header = json.loads(fh.read(length))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return f"{path.name} has an unreadable safetensors header"
    if size != 8 + length + end:
        return f"{path.name} is {size} bytes but its header describes {8 + length + end}"
    return None


def _distributed_checkpoint_problem(folder: Path) -> str | None:
    """Why a torch distributed checkpoint folder (FSDP's sharded ``pytorch_model_fsdp_0``, ``optimizer_0``)
    is not whole: its ``.metadata`` unreadable, or a shard file it lists missing or shorter than listed."""
    import pickle

    try:
        with open(folder / ".metadata", "rb") as fh:
            storage = pickle.load(fh).storage_data.values()
    except FileNotFoundError:
        return f"{folder.name}/.metadata is missing"
    except Exception as exc:  # noqa: BLE001 - unpickling a cut file raises many types
        return f"{folder.name}/.metadata is unreadable ({type(exc).__name__})"
    needed: dict[str, int] = {}
    for info in storage:
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, end in sorted(needed.items()):
        shard = folder / name
        if not shard.is_file():
            return f"{folder.name}/{name} is missing"
        if shard.stat().st_size < end:
            return f"{folder.name}/{name} is truncated ({shard.stat().st_size} bytes, {end} listed)"
    return None


def checkpoint_problem(checkpoint) -> str | None:
    """Why a Trainer checkpoint cannot be resumed, or None when it is whole.

    ``trainer_state.json`` (the Trainer's last write) must be readable, the weights whole: every safetensors
    file's size agreeing with its header, every shard a ``*.safetensors.index.json`` names present, every
    torch distributed checkpoint folder's listed shards present at their listed sizes (FSDP), and every
    ``torch.save`` file (optimizer, scheduler, RNG state) a readable zip. Only headers and directories are
    read, so a 7B checkpoint is checked in well under a second.
    """
    import zipfile

    checkpoint = Path(checkpoint)
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "no trainer_state.json (the Trainer's last write)"
    except ValueError:
        return "trainer_state.json is not readable JSON"
    weights = sorted(checkpoint.glob("*.safetensors"))
    shards = sorted(p for p in checkpoint.iterdir()
                    if p.is_dir() and ((p / ".metadata").exists() or p.name.startswith("pytorch_model_fsdp")))
    if not weights and not shards and not list(checkpoint.glob("pytorch_model*.bin")):
        return "no weights (no *.safetensors, pytorch_model*.bin or pytorch_model_fsdp_* folder)"
    if (problem := shard_problem(checkpoint, "*.safetensors.index.json")):
        return problem
    for path in weights:
        if (problem := _safetensors_problem(path)):
            return problem
    for folder in shards:
        if (problem := _distributed_checkpoint_problem(folder)):
            return problem
    for path in sorted([*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth"), *checkpoint.glob("*.bin")]):
        if not zipfile.is_zipfile(path):
            return f"{path.name} is truncated (not a readable torch.save file)"
    return None


def _recorded_run(run_file: Path):
    """The settings a work dir's run file records, or None: none recorded, or a file that is not JSON (then
    its checkpoints cannot be told to be of this run, and are discarded with a warning, not trusted)."""
    try:
        return json.loads(run_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        log.warning("%s: not readable JSON (%s): the checkpoints next to it are discarded, training starts afresh",
                    run_file, exc)
        return None


def resume_checkpoint(work_dir, run: dict, *, main_process: bool):
    """The newest whole checkpoint in ``work_dir`` of the same run, or None to start afresh.

    A checkpoint is resumed only when :func:`checkpoint_problem` finds none: a half-written or truncated one
    is deleted by the main process with a warning naming it and why, and the one before it (if any) resumed.
    All are deleted when ``run`` (the settings) changed, or when the run file is unreadable.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    work_dir = Path(work_dir)
    run_file = work_dir / RUN_FILE
    same_run = _recorded_run(run_file) == run
    checkpoints = sorted(work_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    problems = {c: checkpoint_problem(c) for c in checkpoints} if same_run else {}
    complete = [c for c in checkpoints if same_run and problems[c] is None]
    if main_process:
        shutil.rmtree(work_dir / "final", ignore_errors=True)
        if not complete:  # starting afresh: no epoch model of an earlier start may be kept
            shutil.rmtree(work_dir / EPOCHS_DIR, ignore_errors=True)
        for stale in sorted(set(checkpoints) - set(complete)):
            if same_run:
                log.warning("removing incomplete checkpoint %s: %s", stale, problems[stale])
            else:
                log.warning("removing checkpoint of other settings %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
        if not same_run:
            write_text(run_file, json.dumps(run, sort_keys=True))
    return str(complete[-1]) if complete else None


def clear_work_dir(work_dir) -> None:
    """Delete what a finished run left in ``work_dir`` (checkpoints, settings, staging)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    work_dir = Path(work_dir)
    for path in [*work_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), work_dir / "final", work_dir / EPOCHS_DIR]:
        shutil.rmtree(path, ignore_errors=True)
    (work_dir / RUN_FILE).unlink(missing_ok=True)


def save_final_model(trainer, tokenizer, out_dir, save_dtype: str, meta: dict | None = None,
                     saved_weight=None) -> None:
    """``save_pretrained`` (safetensors) of the trained model in ``save_dtype``, written by the main process,
    with ``meta`` (the run's precision, device, save dtype) as ``training.json`` beside the weights.

    Every process takes part: under FSDP the full state dict is gathered from the shards (to the main
    process's CPU memory). ``Trainer.save_model`` writes nothing under FSDP's sharded state dicts.
    """
    dtype = precisions.torch_dtype(save_dtype)
    state = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        adapter = saved_weight is not None
        if adapter:  # an adapter run saves its adapter's weights only (the method's saved_weight)
            state = {k: v for k, v in state.items() if saved_weight(k)}
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        model.save_pretrained(out_dir, state_dict=state)
        if not adapter:  # an adapter is applied over the base model, which has its own config and tokenizer
            model.config.dtype = dtype  # save_pretrained writes the dtype of the (fp32) training weights
            model.config.save_pretrained(out_dir)
            tokenizer.save_pretrained(out_dir)
        write_json(Path(out_dir) / TRAINING_FILE, {**(meta or {}), "save_dtype": save_dtype})
    trainer.accelerator.wait_for_everyone()
