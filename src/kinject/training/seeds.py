"""Training seeds: each fine-tuned model trained once per seed of ``finetune.seeds`` (default: the run's one
``seed``), so the tables can carry the variance of training beside that of the questions.

The run's own ``seed`` keeps today's artifacts: its runs, cells and jobs are the ones a config without
``finetune.seeds`` makes (results/finetune/{model}/{task}/k{k}, cell ft-p{k}), so adding seeds re-runs
nothing. Every other seed is a tag on the paraphrase set: set ``{k}`` trained with seed ``{s}`` is
``{k}_s{s}`` in the run folder (k10_s7), the wildcards (k, p) and the cell's method name (ft-p10_s7,
ftrag-p10_s7). An extra seed re-trains with the learning rate and epochs the search chose under the run's seed
(the search is not repeated per seed); its model is scored like the run seed's (FT, and FT+RAG where its set is
one of RAG's generators), not on the forgetting controls.

Which models get the extra seeds: ``finetune.seed_tasks`` (default every task), ``finetune.seed_methods``
(method names, a control such as ``steps`` included; default every method) and ``finetune.seed_sets``
(paraphrase sets; default every set), all three at once, so a grid can spend its seeds on the cells its headline
comparisons rest on.
"""

from __future__ import annotations

import re

from kinject.errors import KinjectError

SEEDS_KEY = "finetune.seeds"
TAG = "_s"
PATTERN = r"\d+(?:_s\d+)?"  # a paraphrase set, with a seed's tag where it is an extra seed's model
_TAGGED = re.compile(r"(?P<p>\d+)(?:_s(?P<seed>\d+))?")


def run_seeds(config: dict) -> list[int]:
    """The training seeds: finetune.seeds, default the run's ``seed``."""
    return list(config["finetune"].get("seeds", [config["seed"]]))


def extra_seeds(config: dict) -> list[int]:
    """The seeds other than the run's ``seed`` (whose models carry no tag), in the listed order."""
    return [s for s in run_seeds(config) if s != config["seed"]]


def is_seeded(config: dict, task: str, method: str, p: int) -> bool:
    """Whether ``method``'s (its name) model of paraphrase set p of ``task`` is trained under the extra seeds too."""
    ft = config["finetune"]
    return (task in ft.get("seed_tasks", [task]) and method in ft.get("seed_methods", [method])
            and int(p) in ft.get("seed_sets", [int(p)]))


def tag(p, seed: int | None = None) -> str:
    """Set p's wildcard value under ``seed`` (None: the run's seed, no tag): 10 -> "10", (10, 7) -> "10_s7"."""
    return str(p) if seed is None else f"{p}{TAG}{seed}"


def untag(value) -> tuple[int, int | None]:
    """(paraphrase set, seed or None) of a wildcard value: "10_s7" -> (10, 7), "10" -> (10, None)."""
    m = _TAGGED.fullmatch(str(value))
    if not m:
        raise ValueError(f"not a paraphrase set (with a seed's tag): {value!r}")
    return int(m["p"]), None if m["seed"] is None else int(m["seed"])


def seeded_runs(config: dict, task: str, method: str, sets) -> list[str]:
    """The wildcard values of ``method``'s models of ``sets`` of ``task``: each set as today, then each seeded set
    under every extra seed (tagged)."""
    sets = list(sets)
    return [tag(p) for p in sets] + [tag(p, s) for s in extra_seeds(config) for p in sets
                                     if is_seeded(config, task, method, p)]


def check(config: dict, source: str, methods, sets) -> None:
    """finetune.seeds, seed_tasks, seed_methods, seed_sets: one line naming the key where a list is empty or repeats,
    the run's seed is left out, or a name or set is in no task's grid (``methods``: the grid's method names,
    ``sets``: every task's paraphrase sets)."""
    ft = config["finetune"]
    for key in ("seeds", "seed_tasks", "seed_methods", "seed_sets"):
        if key not in ft:
            continue
        values = list(ft[key])
        if not values:
            raise KinjectError(source, f"finetune.{key} is empty (leave it out for the default)")
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise KinjectError(source, f"finetune.{key} lists {', '.join(repeated)} more than once")
    if config["seed"] not in run_seeds(config):
        raise KinjectError(source, f"{SEEDS_KEY} leaves out the run's seed ({config['seed']}), whose models are the "
                           "grid's own: list it (the other seeds are re-trainings beside it)")
    unknown = sorted(set(ft.get("seed_tasks", [])) - set(config["tasks"]))
    if unknown:
        raise KinjectError(source, f"finetune.seed_tasks: {unknown[0]!r} is not a task ({', '.join(config['tasks'])})")
    unknown = sorted(set(ft.get("seed_methods", [])) - set(methods))
    if unknown:
        raise KinjectError(source, f"finetune.seed_methods: {unknown[0]!r} trains no model of this grid "
                           f"(its methods: {', '.join(sorted(methods))})")
    unknown = sorted(set(ft.get("seed_sets", [])) - set(sets))
    if unknown:
        raise KinjectError(source, f"finetune.seed_sets: set {unknown[0]} is in no task's paraphrase_sets")
