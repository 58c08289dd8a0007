"""Entry points: the thin scripts/ call ``rule_main``; ``kinject`` is a small command line."""

from __future__ import annotations

import logging
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
    try:
        return func(*args, **kwargs)
    except KinjectError as err:
        logging.getLogger("kinject").error("%s", err)
        print(f"kinject error: {err}", file=sys.stderr)
        sys.exit(1)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="kinject", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    jobs = sub.add_parser("jobs", help="expected jobs per rule for a config (the README's formula)")
    jobs.add_argument("configfile", nargs="+")
    plan = sub.add_parser("plan", help="memory, GPU-hours, disk and LLM cost per rule before anything runs")
    plan.add_argument("configfile", nargs="*", default=["config.yaml"],
                      help="config files, later ones updating earlier ones (default: config.yaml)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--root", default=".", help="where Snakemake runs: results/, model folders, the accelerate "
                                                  "config are looked up here (default: the current directory)")
    args = parser.parse_args(argv)
    if args.cmd == "plan":
        import json

        from kinject.plan import format_plan, make_plan
        from kinject.settings import load_config

        try:
            result = make_plan(load_config(*args.configfile), args.root)
        except KinjectError as err:
            print(f"kinject error: {err}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps(result, indent=1) if args.json else format_plan(result, " ".join(args.configfile)), end="\n"
              if args.json else "")
    if args.cmd == "jobs":
        from kinject.grid import expected_job_counts
        from kinject.settings import load_config

        counts = expected_job_counts(load_config(*args.configfile))
        for rule, n in sorted(counts.items()):
            print(f"{rule}\t{n}")
        print(f"total\t{sum(counts.values())}")
