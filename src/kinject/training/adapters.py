"""An adapter run's artifact (a fine-tuning method that trains an adapter over the frozen base model, not a
whole model: kinject.training.methods): peft's ``adapter_config.json`` beside its weights, checked before
a model loads."""

from __future__ import annotations

import json
from pathlib import Path

from kinject.errors import KinjectError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def check_adapter(folder, base) -> None:
    """An adapter folder for ``base``, checked before a model loads: a one-line error naming the folder if it
    holds no adapter or one trained over another base model."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise KinjectError(folder, f"no {ADAPTER_CONFIG}: not an adapter (peft)") from None
    except json.JSONDecodeError as exc:
        raise KinjectError(path, f"not valid JSON ({exc})") from None
    trained_on = saved.get("base_model_name_or_path")
    if trained_on is not None and Path(str(trained_on)).resolve() != Path(str(base)).resolve() \
            and str(trained_on) != str(base):
        raise KinjectError(path, f"the adapter was trained over {trained_on}, not {base}")
