"""Entry points: the thin scripts/ call ``rule_main``; ``kinject`` is a small command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from kinject.errors import KinjectError


def rule_main(snakemake, func, *args, summarize=None, **kwargs):
    """Run one rule's function as a Snakemake job.

    Everything the job prints, its libraries included (warnings, progress bars, C-level output), goes to
    the rule's log file: file descriptors 1 and 2 are pointed at it. The console gets one line: the job's
    summary (``summarize(result)``, or the result itself when short) or its one-line error. A compute job
    (one with a ``gpu`` resource) gives torch the job's threads and fails with one line when it asked for a
    GPU and CUDA is missing (unless ``resources.allow_cpu``).
    """
    console = os.fdopen(os.dup(2), "w", buffering=1)
    if snakemake.log:
        log_path = Path(snakemake.log[0])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # Python-level writers follow the descriptors
        sys.stderr = open(2, "w", buffering=1, closefd=False)
    logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr)], force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    label = job_label(snakemake)
    try:
        setup_job(snakemake)
        result = func(*args, **kwargs)
    except KinjectError as err:
        logging.getLogger("kinject").error("%s", err)
        print(f"kinject error: {err}", file=console)
        sys.exit(1)
    except BaseException as exc:
        where = f"; traceback in {snakemake.log[0]}" if snakemake.log else ""
        print(f"{label} failed: {type(exc).__name__}: {exc}{where}", file=console)
        raise
    text = summarize(result) if summarize else _short(result)
    logging.getLogger("kinject").info("%s done: %s", label, text)
    print(f"{label} done: {text}", file=console)
    return result


def job_label(snakemake) -> str:
    wildcards = ", ".join(f"{k}={v}" for k, v in snakemake.wildcards.items())
    return f"{snakemake.rule}[{wildcards}]" if wildcards else snakemake.rule


def setup_job(snakemake) -> None:
    """Threads and device of the job, logged: what the job was given is what it uses."""
    log = logging.getLogger("kinject.job")
    resources = snakemake.resources
    log_job_environment(snakemake.threads)
    log.info("job %s, resources %s", job_label(snakemake),
             {k: v for k, v in resources.items() if k not in ("_cores", "_nodes", "tmpdir")})
    if resources.get("gpu") is None:
        return
    from kinject.device import check_gpu, use_threads

    device = check_gpu(int(resources.get("gpu")), bool(resources.get("allow_cpu", 0)), job_label(snakemake))
    log.info("device %s, torch threads %d", device, use_threads(snakemake.threads))


def _short(result) -> str:
    if result is None:
        return "ok"
    text = str(result)
    return text if len(text) <= 160 else text[:157] + "..."


def log_job_environment(threads: int | None = None) -> None:
    """Log one line with what the job was given: its threads, its GPUs (CUDA_VISIBLE_DEVICES, which
    SLURM sets in a job allocated GPUs), its SLURM job, if any, and whether the hub is switched off for it
    (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE: set by the workflow for every job) ('unset' where a variable is not set)."""
    fields = [f"threads={threads}"] if threads is not None else []
    fields += [f"{name}={os.environ.get(name, 'unset')}"
               for name in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "HF_HUB_OFFLINE",
                            "HF_DATASETS_OFFLINE")]
    logging.getLogger("kinject").info("job environment: %s", ", ".join(fields))


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="kinject", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    jobs = sub.add_parser("jobs", help="jobs per rule of `snakemake all` for a config (Snakemake's own DAG, every job)")
    jobs.add_argument("configfile", nargs="+")
    plan = sub.add_parser("plan", help="memory, GPU-hours, disk and LLM cost per rule before anything runs")
    plan.add_argument("configfile", nargs="*", default=["config.yaml"],
                      help="config files, later ones updating earlier ones (default: config.yaml)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--root", default=".", help="where Snakemake runs: results/, model folders, the accelerate "
                                                  "config are looked up here (default: the current directory)")
    lock = sub.add_parser("lock", help="pin what a finished run resolved (hub commits, page revisions, file hashes) "
                                       "into the config's lock file (default <config>.lock.json)")
    lock.add_argument("configfile", nargs="*", default=["config.yaml"],
                      help="the config files the run used (default: config.yaml)")
    lock.add_argument("--manifest", help="the run's manifest (default: the study's results/<study>/manifest.json)")
    lock.add_argument("--output", help="the lock file (default: the config's `lock`, else <config>.lock.json)")
    review = sub.add_parser("review", help="write the review sheet of a generated task's questions (a person fills "
                                           "in its decision column; save it as the task's questions.review)")
    review.add_argument("task")
    review.add_argument("configfile", nargs="*", default=["config.yaml"],
                        help="config files, later ones updating earlier ones (default: config.yaml)")
    review.add_argument("--cores", type=int, default=1, help="Snakemake's --cores for the jobs the sheet needs")
    args = parser.parse_args(argv)
    if args.cmd == "review":
        try:
            sys.exit(review_sheet(args.task, args.configfile, cores=args.cores))
        except KinjectError as err:
            print(f"kinject error: {err}", file=sys.stderr)
            sys.exit(1)
    if args.cmd == "lock":
        from kinject.paths import MANIFEST, results_root, rooted
        from kinject.provenance.lock import write_lock
        from kinject.settings import load_config

        try:
            config = load_config(*args.configfile)
            manifest = args.manifest or rooted(MANIFEST, results_root(config))
            out = write_lock(config, args.configfile, manifest, args.output)
        except KinjectError as err:
            print(f"kinject error: {err}", file=sys.stderr)
            sys.exit(1)
        hint = "" if config.get("lock") == out else f"; set `lock: {out}` in the config to use it"
        print(f"wrote {out}{hint}")
    if args.cmd == "plan":
        import json

        from kinject.planning.plan import make_plan
        from kinject.planning.render import format_plan
        from kinject.settings import load_config

        try:
            result = make_plan(load_config(*args.configfile), args.root)
        except KinjectError as err:
            print(f"kinject error: {err}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps(result, indent=1) if args.json else format_plan(result, " ".join(args.configfile)), end="\n"
              if args.json else "")
    if args.cmd == "jobs":
        from kinject.planning.dag import dag_jobs, job_counts
        from kinject.settings import load_config

        try:
            counts = job_counts(dag_jobs(load_config(*args.configfile)))
        except KinjectError as err:
            print(f"kinject error: {err}", file=sys.stderr)
            sys.exit(1)
        for rule, n in sorted(counts.items()):
            print(f"{rule}\t{n}")
        print(f"total\t{sum(counts.values())}")


def review_sheet(task: str, configfiles: list[str], *, cores: int = 1) -> int:
    """``kinject review TASK``: run Snakemake up to rule review_sheet's CSV for ``task`` (generating and
    selecting its questions first if need be) and say where it is and what to do with it."""
    import subprocess

    from kinject.settings import load_config

    config = load_config(*configfiles)
    spec = config["tasks"].get(task)
    if spec is None:
        raise KinjectError(configfiles[-1], f"no task {task!r} (tasks: {', '.join(config['tasks'])})")
    if spec["questions"]["source"] != "generated":
        raise KinjectError(configfiles[-1], f"task {task!r} has {spec['questions']['source']} questions: only "
                           "generated questions are reviewed")
    from kinject.paths import results_root

    sheet = f"{results_root(config)}/{task}/questions/review_sheet.csv"
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", *configfiles, "--", sheet]
    done = subprocess.run(cmd)
    if done.returncode == 0:
        print(f"review sheet: {sheet}\nfill its decision column (accept or reject; empty: not reviewed) and save "
              f"it as {spec['questions'].get('review', 'the file questions.review names')}")
    return done.returncode


if __name__ == "__main__":
    main()
