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


def load_config(*paths) -> dict:
    from snakemake.utils import validate

    config: dict = {}
    for path in paths:
        try:
            deep_update(config, yaml.safe_load(Path(path).read_text()) or {})
        except yaml.YAMLError as exc:
            raise KinjectError(path, f"not valid YAML ({exc})") from None
    try:
        validate(config, str(SCHEMA))
    except Exception as exc:  # snakemake's WorkflowError wraps jsonschema's message
        raise KinjectError(paths[-1], str(exc).splitlines()[0]) from None
    check_config(config, str(paths[-1]))
    return config
