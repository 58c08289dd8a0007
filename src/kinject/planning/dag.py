"""Every job of ``snakemake all`` for a config, from Snakemake's own DAG: its rule and its wildcards.

``kinject plan`` and ``kinject jobs`` read the job list from here rather than re-deriving it from the config,
so the plan's jobs are the workflow's by construction. The DAG is built as ``snakemake -n --forceall all``
builds it (every job of the study, whether or not its outputs exist), through Snakemake's API, in a child
process: building a workflow in-process changes ``os.environ`` and Snakemake's global logging, and this
module's callers (the CLI, the tests) must not inherit that. Nothing runs and nothing is written beyond
Snakemake's own ``.snakemake/`` metadata folder under the workflow's directory.

    python -m kinject.planning.dag CONFIG [CONFIG...]   # one JSON list: [{"rule": ..., "wildcards": {...}}, ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from kinject.errors import KinjectError

CHECKOUT = Path(__file__).resolve().parents[3]  # src/kinject/planning/dag.py -> the repository (its Snakefile)
TARGET = "all"
ERROR = "kinject.planning.dag: "  # the child's one-line error, on stderr
_CACHE: dict[tuple[str, str], list[dict]] = {}


def workflow_dir(root: Path | str = ".") -> Path:
    """Where the Snakefile is: ``root`` when it has one (where Snakemake runs), else this checkout's."""
    root = Path(root)
    return root.resolve() if (root / "Snakefile").is_file() else CHECKOUT


def dag_jobs(config: dict, root: Path | str = ".") -> list[dict]:
    """Every job of ``snakemake all`` for ``config`` (a loaded config): {"rule", "wildcards"} each, wildcard
    values as the strings Snakemake matched; the rules in the order the workflow defines them, each rule's jobs
    sorted by wildcards. Built once per config and workflow."""
    where = workflow_dir(root)
    key = (str(where), json.dumps(config, sort_keys=True, default=str))
    if key not in _CACHE:
        with tempfile.TemporaryDirectory(prefix="kinject-dag-") as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            _CACHE[key] = _child(where, [path])
    return [{"rule": j["rule"], "wildcards": dict(j["wildcards"])} for j in _CACHE[key]]


def job_counts(jobs: list[dict]) -> dict[str, int]:
    """Jobs per rule, in the order the rules first appear (dag_jobs: the workflow's)."""
    return dict(Counter(j["rule"] for j in jobs))


def _child(where: Path, configfiles: list[Path]) -> list[dict]:
    package = str(Path(__file__).resolve().parents[2])  # the same kinject in the child as here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "kinject.planning.dag", *map(str, configfiles)], cwd=where, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        said = [line.removeprefix(ERROR) for line in lines if line.startswith(ERROR)]
        raise KinjectError(where / "Snakefile", "cannot build the DAG of snakemake all: "
                           + (said or lines or [f"exit status {proc.returncode}"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build(configfiles: list[Path], workdir: Path = Path(".")) -> list[dict]:
    """The DAG of ``snakemake -n --forceall all`` in this process (what the child runs)."""
    import asyncio

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
                          config_settings=ConfigSettings(configfiles=[Path(c).absolute() for c in configfiles]),
                          snakefile=workdir / "Snakefile", workdir=workdir)
        wf.dag(DAGSettings(targets={TARGET}))  # sets the workflow's DAG settings
        workflow = wf._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        built = workflow._build_dag()
        if asyncio.iscoroutine(built):
            asyncio.run(built)
        jobs = [{"rule": job.rule.name, "wildcards": dict(job.wildcards_dict)} for job in workflow.dag.jobs]
        order = {rule.name: i for i, rule in enumerate(workflow.rules)}  # as the rule files define them
    return sorted(jobs, key=lambda j: (order[j["rule"]], sorted(j["wildcards"].items())))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        jobs = build([Path(a) for a in args])
    except Exception as exc:  # Snakemake's own (missing input, ambiguous rules, a bad Snakefile): one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print(f"{ERROR}{type(exc).__name__}: {'; '.join(lines)}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(jobs))


if __name__ == "__main__":
    main()
