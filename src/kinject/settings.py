"""Load a config the way Snakemake does (later files update earlier ones), validated by the same schema."""

from __future__ import annotations

from pathlib import Path

import yaml

from kinject.errors import KinjectError
from kinject.grid import check_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config" / "schema.yaml"


def deep_update(base: dict, other: dict) -> dict:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def canonical(value):
    """value with every dict's keys sorted, recursively: the form of a config section given to a rule as a
    param. Snakemake compares params by repr, and a dict's repr follows its key order, so without this
    reordering the keys of a config file (or the schema filling a default) would re-run finished jobs."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return type(value)(canonical(item) for item in value)
    return value


def job_resources(config: dict, entry: str = "gpu_rules") -> dict:
    """A compute job's settings: resources.gpu_rules updated by resources.<entry> (finetune, evaluate, ...)."""
    res = config["resources"]
    return {**res["gpu_rules"], **res.get(entry, {})}


def validate_config(config: dict, source) -> None:
    """Snakemake's schema validation (filling defaults) plus the grid checks; one line per problem."""
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA))
    except Exception as exc:  # snakemake's WorkflowError wraps jsonschema's message
        lines = [line for line in str(exc).splitlines() if line.strip()]
        where = next((line for line in lines if line.startswith("On instance[")), "").rstrip(":")
        problem = next((line for line in lines if not line.startswith("Error validating")), lines[0])
        raise KinjectError(source, f"{problem.removeprefix('ValidationError: ')} {where}".strip()) from None
    check_config(config, str(source))


def load_config(*paths) -> dict:
    config: dict = {}
    for path in paths:
        try:
            deep_update(config, yaml.safe_load(Path(path).read_text()) or {})
        except yaml.YAMLError as exc:
            raise KinjectError(path, f"not valid YAML ({exc})") from None
    validate_config(config, paths[-1])
    return config
