"""How a training job starts: the settings a training rule passes (its params), the resources it runs on,
and the exact command, ``accelerate launch --config_file <finetune.accelerate_config>`` of the rule's entry
point (kinject.training.finetune or kinject.training.hparams) with one process per GPU of the job:

    python -m accelerate.commands.launch --config_file profiles/slurm/accelerate_fsdp.yaml --num_processes 4 \\
        -m kinject.training.finetune --base meta-llama/Llama-2-7b-hf --train paraphrases_k0.parquet --out ckpt ...

The accelerate config file (FSDP full sharding) is the launch configuration; two launch arguments come from
the job: the process count (the job's GPUs, or ``resources.<rule>.processes`` on CPU) and ``--mixed_precision``,
from the config's ``precision`` as resolved where the job runs (kinject.precision: auto is bf16 where the device
has it natively, fp32 elsewhere), so the file carries no second copy of it.
"""

from __future__ import annotations

import csv
import json
import logging
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from kinject import precision as precisions
from kinject import settings
from kinject.errors import KinjectError
from kinject.training.finetune import ENTRY_POINTS, check_device
from kinject.training.methods import METHODS

log = logging.getLogger(__name__)


def rule_settings(config: dict, rule: str, task: dict | None = None, method: str = "full") -> dict:
    """What a training rule reads from the config: its params (so editing any other key re-runs nothing).

    ``finetune`` takes lr and epochs from the config only for a task without a search (``task`` has no
    ``validation``); otherwise they come from the search's chosen.json, an input of the rule. ``method`` (a
    kinject.training.methods name) adds its options (an adapter's spec) and gives the learning rate.
    """
    ft = config["finetune"]
    settings = {"precision": config["precision"], "accelerate_config": ft["accelerate_config"], "seed": config["seed"],
                **{key: ft[key] for key in ("block_size", "batch_size", "per_device_batch_size",
                                            "gradient_checkpointing")}}
    if rule not in ENTRY_POINTS:
        raise ValueError(f"not a training rule: {rule}")
    if method not in METHODS:
        raise ValueError(f"not a fine-tuning method: {method}")
    # a trial keeps its epochs' models, which become checkpoints. Unset (auto) it follows the precision: written
    # out where the config names one, so a config without save_dtype keeps the params (and checkpoints) it had;
    # left auto under precision auto, which the job resolves
    asked = ft.get("save_dtype", precisions.AUTO)
    settings["save_dtype"] = asked if config["precision"] == precisions.AUTO else \
        precisions.save_dtype(asked, config["precision"])
    settings.update(METHODS[method].options(config))
    if rule == "hparam_trial":
        return {**settings, "max_epochs": ft["search"]["max_epochs"]}
    if task is None or "validation" not in task:
        settings.update(lr=METHODS[method].lr(config), epochs=ft["epochs"])
    return settings


def job_resources(config: dict, rule: str) -> dict:
    """Resources of a training job (resources.<rule> over gpu_rules, as the rules get them) and whether it
    may train on CPU when it asks for GPUs and finds no CUDA (resources.allow_cpu)."""
    return {**settings.job_resources(config, rule), "allow_cpu": int(config["resources"]["allow_cpu"])}


def read_accelerate_config(path) -> dict:
    """The accelerate config file, checked (one line naming the file if it is not one kinject can launch)."""
    import yaml

    try:
        launch = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise KinjectError(path, "file not found (finetune.accelerate_config)") from None
    except yaml.YAMLError as exc:
        raise KinjectError(path, f"not valid YAML ({exc})") from None
    if not isinstance(launch, dict) or "distributed_type" not in launch:
        raise KinjectError(path, "not an accelerate config file (no distributed_type)")
    if (launch.get("fsdp_config") or {}).get("fsdp_activation_checkpointing"):
        raise KinjectError(path, "fsdp_activation_checkpointing is set: use finetune.gradient_checkpointing instead")
    return launch


def file_mixed_precision(launch: dict) -> str | None:
    """The file's own ``mixed_precision`` (None where it has none): the launch's --mixed_precision overrides it."""
    if "mixed_precision" not in launch:
        return None
    mixed = launch["mixed_precision"]
    return "no" if mixed is False else str(mixed)  # YAML reads a bare `no` as false


def process_count(resources: dict) -> int:
    """Processes of a training job: one per GPU it asks for, else ``processes`` (CPU processes, default 1)."""
    gpus = int(resources.get("gpu", 0))
    return gpus if gpus > 0 else int(resources.get("processes", 1))


def check_global_batch(batch_size: int, per_device_batch_size: int, processes: int) -> None:
    """The configured batch must split evenly over the processes (else the global batch would change)."""
    if batch_size % (per_device_batch_size * processes):
        raise KinjectError("finetune.batch_size", f"{batch_size} is not a multiple of per_device_batch_size "
                           f"{per_device_batch_size} x {processes} processes")


def check_launch(config: dict) -> None:
    """What the training jobs' launch needs from the config, checked before any job runs (Snakefile parse)."""
    ft = config["finetune"]
    read_accelerate_config(ft["accelerate_config"])
    precisions.check_choice(config["precision"])
    for rule in ENTRY_POINTS:
        check_global_batch(ft["batch_size"], ft["per_device_batch_size"], process_count(job_resources(config, rule)))


def launch_command(settings: dict, rule: str, files: dict, resources: dict, threads: int) -> list[str]:
    """The exact command (argv) of a training job: ``accelerate launch`` of the rule's module.

    ``settings`` are the rule's config values (:func:`rule_settings`) and ``mixed_precision``, the launch's, from
    the precision :func:`resolved` on the job's device (the processes get ``precision`` as asked, resolve it
    themselves and check they agree with the launch), ``files`` its inputs and outputs
    (name -> path, or None), ``resources`` the job's (gpu, processes, allow_cpu) and ``threads`` its CPUs.
    The accelerate config file is passed whole (``--config_file``); the launch arguments derived from the
    job are the process count (its GPUs, or ``processes``, default 1, when it asks for none) and
    ``--mixed_precision`` of the resolved precision. The processes share the job's CPUs: each gets
    ``threads // processes`` torch threads (at least 1).
    """
    if rule not in ENTRY_POINTS:
        raise ValueError(f"not a training rule: {rule}")
    if "mixed_precision" not in settings:
        raise ValueError("settings without mixed_precision: kinject.training.launch.resolved(settings, device) first")
    path = settings["accelerate_config"]
    read_accelerate_config(path)
    gpus, processes = int(resources.get("gpu", 0)), process_count(resources)
    check_global_batch(settings["batch_size"], settings["per_device_batch_size"], processes)
    options = {**files, **{k: v for k, v in settings.items() if k not in ("accelerate_config", "mixed_precision")},
               "gpus": gpus,
               "allow_cpu": bool(resources.get("allow_cpu", 0)), "threads": max(1, threads // processes)}
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
            "--num_processes", str(processes), "--mixed_precision", settings["mixed_precision"],
            "-m", ENTRY_POINTS[rule]]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, str(value)]
    return argv


def resolved(settings: dict, device: str) -> dict:
    """A training rule's settings with ``mixed_precision``, the launch's: ``precision`` (auto, bf16, fp32)
    resolved on ``device`` (kinject.precision). The accelerate file's own mixed_precision, where it disagrees,
    is said to be overridden (one line in the job's log)."""
    chosen = precisions.resolve(settings["precision"], device)
    in_file = file_mixed_precision(read_accelerate_config(settings["accelerate_config"]))
    wanted = precisions.MIXED_PRECISION[chosen.name]
    if in_file is not None and in_file != wanted:
        log.warning("%s: mixed_precision %r is overridden by --mixed_precision %r (%s)", settings["accelerate_config"],
                    in_file, wanted, chosen.note)
    return {**settings, "mixed_precision": wanted}


def launch(rule: str, settings: dict, files: dict, resources: dict, threads: int, log_path=None) -> str:
    """Run a training job (rules finetune and hparam_trial): check the device, resolve the precision on it
    (once, logged; the accelerate file's own mixed_precision, if any, is overridden and said so), then
    :func:`launch_command`.

    The processes inherit the job's stdout and stderr, which :func:`kinject.cli.rule_main` points at the
    rule's log (``log_path``); a failure is one line with the processes' own error line from that log. A SIGTERM
    to the job is passed to the training processes (:func:`forward_sigterm`): they save a checkpoint and stop,
    and the job fails with their line.
    """
    device = check_device(settings["precision"], gpus=int(resources.get("gpu", 0)),
                          allow_cpu=bool(resources.get("allow_cpu", 0)))
    argv = launch_command(resolved(settings, device), rule, files, resources, threads)
    log.info("launching: %s", shlex.join(argv))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    done = subprocess.Popen(argv)
    main_thread = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    if main_thread:
        previous = signal.signal(signal.SIGTERM, lambda *_: forward_sigterm(done.pid, ENTRY_POINTS[rule]))
    try:
        done.wait()
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if done.returncode:
        lines = Path(log_path).read_text(errors="replace").splitlines() if log_path else []
        errors = [line for line in lines if line.startswith("kinject error: ")]
        why = errors[-1].removeprefix("kinject error: ") if errors else "see the log"
        raise KinjectError(log_path or rule, f"{rule} exited with status {done.returncode}: {why}")
    return training_summary(files, process_count(resources))


def forward_sigterm(launcher_pid: int, module: str) -> None:
    """Pass a SIGTERM the job got (SLURM's time limit, scancel, Snakemake) to its training processes, which save
    a checkpoint and stop (kinject.training.finetune); the launcher waits for them and fails with their line.

    The signal goes to the processes running ``module`` (``-m kinject.training.finetune``), not to ``accelerate launch``:
    on SIGTERM it, and torch's elastic agent below it, kill the workers after 5 and 30 seconds, which may be too
    short for a 7B model's checkpoint. Before any worker has started, the launcher itself gets it.
    """
    import psutil

    try:
        processes = psutil.Process(launcher_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    workers = []
    for process in processes:
        try:
            if module in process.cmdline():
                workers.append(process)
        except psutil.Error:  # ended meanwhile
            pass
    log.warning("SIGTERM: passed to %s", f"{len(workers)} training process(es)" if workers else "the launcher")
    for process in workers or [psutil.Process(launcher_pid)]:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass


def training_summary(files: dict, processes: int) -> str:
    """One line for the console: the run's last training loss, or a trial's validation loss per epoch."""
    where = f"on {processes} process(es)"
    if files.get("loss_csv") and Path(files["loss_csv"]).exists():
        with open(files["loss_csv"], encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return f"{len(rows)} steps {where}, final training loss {float(rows[-1]['loss']):.3f}" if rows else where
    if files.get("lr") and Path(files["out"]).exists():
        trial = json.loads(Path(files["out"]).read_text())
        return f"lr {files['lr']} {where}: validation loss per epoch " + ", ".join(
            f"{loss:.3f}" for loss in trial["val_loss_per_epoch"])
    return where
