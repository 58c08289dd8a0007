"""Entry points: the thin scripts/ call ``rule_main``; ``kinject`` is a small command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from kinject.errors import KinjectError


def rule_main(snakemake, func, *args, **kwargs):
    """Run one rule's function: log to the rule's log file; bad input exits 1 with one clear line."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log_job_environment(snakemake.threads)
    try:
        return func(*args, **kwargs)
    except KinjectError as err:
        logging.getLogger("kinject").error("%s", err)
        print(f"kinject error: {err}", file=sys.stderr)
        sys.exit(1)


def log_job_environment(threads: int | None = None) -> None:
    """Log one line with what the job was given: its threads, its GPUs (CUDA_VISIBLE_DEVICES, which
    SLURM sets in a job allocated GPUs) and its SLURM job, if any ('unset' where a variable is not set)."""
    fields = [f"threads={threads}"] if threads is not None else []
    fields += [f"{name}={os.environ.get(name, 'unset')}" for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")]
    logging.getLogger("kinject").info("job environment: %s", ", ".join(fields))


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="kinject", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    jobs = sub.add_parser("jobs", help="expected jobs per rule for a config (the README's formula)")
    jobs.add_argument("configfile", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "jobs":
        from kinject.grid import expected_job_counts
        from kinject.settings import load_config

        counts = expected_job_counts(load_config(*args.configfile))
        for rule, n in sorted(counts.items()):
            print(f"{rule}\t{n}")
        print(f"total\t{sum(counts.values())}")
