"""Question sources as data (lm-eval's tasks-as-data style): a source is one ``QuestionSource`` entry naming
the rule that writes its ``questions.parquet``, the keys it needs, the local files it reads (its rule's inputs,
so editing one re-runs it, and the lock's files), whether it comes from the hub and whether it has a dev split
for few-shot. The config checks (kinject.grid), the rules' routing (rules/common.smk), the hub downloads and
the lock read the entry; a new source is its loader plus one ``register`` call below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kinject.errors import KinjectError
from kinject.registry import Registry


@dataclass(frozen=True)
class QuestionSource:
    name: str  # tasks.<t>.questions.source / evaluation.controls.<c>.source
    rule: str  # the rule writing results/{task}/questions.parquet
    required: tuple[str, ...] = ()  # keys the source needs
    files: Callable[[dict], list[str]] = lambda spec: []  # its local files, from its spec
    hub: bool = False  # downloaded from the hub (rules download_dataset, download_control_dataset)
    few_shot: bool = True  # has a dev split to draw few-shot examples from
    control: bool = True  # may be a control (evaluation.controls): a question set outside every task
    groups: bool = False  # may name a group column (questions.group_column: kinject.reporting.clusters)
    check: Callable[[dict, str, str], None] | None = None  # (spec, key, config file): its own checks
    # questions per cluster (a generated question's cluster: its chunk, of questions.keep; else the question)
    cluster_size: Callable[[dict], int] = lambda spec: 1
    paper_effects: bool = False  # the paper's reported differences (its Table 2: generated, current events) apply
    sourced: bool = False  # every question names its source chunk (chunk_id): the oracle cells' context


QUESTION_SOURCES = Registry("question source")
register = QUESTION_SOURCES.register


def question_source(spec: dict, key: str, config_file: str = "config", control: bool = False) -> QuestionSource:
    """The registered source of a question spec at config key ``key``, its required keys checked; one line
    naming the key, the value and the registered sources otherwise."""
    source = QUESTION_SOURCES.lookup(spec["source"], f"{key}.source", config_file,
                                     among=[n for n, s in QUESTION_SOURCES.items() if s.control or not control],
                                     qualifier=" for a control" if control else "")
    for required in source.required:
        if required not in spec:
            raise KinjectError(config_file, f"{key}.{required} is required for source {source.name}")
    if "group_column" in spec and not source.groups:
        raise KinjectError(config_file, f"{key}.group_column: source {source.name} has no group column (only "
                           f"{', '.join(n for n, s in QUESTION_SOURCES.items() if s.groups)} questions do)")
    if source.check:
        source.check(spec, key, config_file)
    return source


def _mmlu_csv_files(spec: dict) -> list[str]:
    from kinject.qa.sets import mmlu_csv_files

    return [str(path) for path in mmlu_csv_files(spec["path"], spec["subject"]).values() if path is not None]


def _check_generated(spec: dict, key: str, config_file: str) -> None:
    if spec["keep"] > spec["per_chunk"]:
        raise KinjectError(config_file, f"{key}.keep is larger than questions.per_chunk")
    if "review" not in spec:
        raise KinjectError(config_file, f"{key}.review is required for generated questions: the review file's path, "
                           "or skip to go without a human review")


# The registered sources ---------------------------------------------------------------------------------------

register(QuestionSource("mmlu", "load_mmlu_questions", required=("subject",), hub=True))
register(QuestionSource("mmlu_csv", "load_mmlu_questions", required=("subject", "path"), files=_mmlu_csv_files))
register(QuestionSource("generated", "generate_questions", few_shot=False, control=False, check=_check_generated,
                        cluster_size=lambda spec: spec["keep"], paper_effects=True, sourced=True))
register(QuestionSource("table", "load_table_questions", required=("path",), files=lambda spec: [spec["path"]],
                        groups=True))
