"""The study's grid: which score files exist for a config, and the checks that make a grid possible.

The Snakefile (``rules/common.smk``) makes its targets from these functions. Which jobs those targets make is
Snakemake's answer, read from its own DAG (``kinject.planning.dag``); nothing here counts jobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from kinject.errors import KinjectError
from kinject.evaluation.retrievers import RAG_RETRIEVER, RETRIEVERS, rag_cell, retriever_ks, run_retrievers
from kinject.knowledge.sources import KNOWLEDGE_SOURCES, knowledge_source
from kinject.paths import CONTROL_SCORE, RECORDS_PATTERN, SCORE_PATTERN
from kinject.qa.sources import QUESTION_SOURCES, question_source
from kinject.training import seeds
from kinject.training.methods import METHODS, Method, cell_method, ft_rag_sets, method

FORMATS = ("options", "letters")  # kinject/templates/formats.yaml: how a question and its options are scored
@dataclass(frozen=True)
class Cell:
    model: str
    task: str
    method: str  # base | rag | {prefix}-p{n} | {prefix}rag-p{n} of a fine-tuning method (kinject.training.methods)
    k: int
    shots: int
    format: str = "options"

    @property
    def path(self) -> str:
        return SCORE_PATTERN.format(**self.__dict__)

    @property
    def records(self) -> str:
        return RECORDS_PATTERN.format(**self.__dict__)

    @property
    def paraphrase_set(self) -> int | None:
        return seeds.untag(self.method.split("-p")[1])[0] if "-p" in self.method else None

    @property
    def seed(self) -> int | None:
        """The training seed of an extra seed's model (kinject.training.seeds: ft-p10_s7); None otherwise."""
        return seeds.untag(self.method.split("-p")[1])[1] if "-p" in self.method else None

    @property
    def finetuned(self) -> bool:
        return cell_method(self.method) is not None


def ft_methods(config: dict, task: dict) -> list[str]:
    """A task's fine-tuning methods: tasks.<t>.finetune_methods, else finetune.methods (default: full)."""
    return list(task.get("finetune_methods", config["finetune"]["methods"]))


def trains_on_pairs(config: dict, task: dict) -> bool:
    """Whether a task trains a method on QA-SFT's pairs (Method.qa_pairs: qa_sft, pit, pit_mixed)."""
    return any(METHODS[name].qa_pairs for name in ft_methods(config, task))


def task_methods(config: dict, task: dict) -> list[Method]:
    """A task's fine-tuning methods (:func:`ft_methods`), then each control (kinject.training.methods: matches) of
    one of them that has a model of some set of the task (:func:`method_sets`)."""
    named = ft_methods(config, task)
    controls = [m for m in METHODS.values() if m.matches in named and method_sets(config, task, m)]
    return [METHODS[name] for name in named] + controls


def method_sets(config: dict, task: dict, m: Method, rag: bool = False) -> list[int]:
    """The paraphrase sets of a task that ``m`` has a model of (``rag``: a model that is also RAG's generator, the
    FT+RAG cells): the sets it trains (Method.trained_sets), for a control those at its config key ``sets_key``."""
    if rag and not m.rag:
        return []
    listed = m.listed_sets(config)
    return [p for p in m.trained_sets(config, task, rag=rag) if listed is None or p in listed]


def method_runs(config: dict, name: str, m: Method, rag: bool = False) -> list[str]:
    """The models of :func:`method_sets` of task ``name`` as wildcard values (p): each set, then each seeded set
    under every extra training seed (kinject.training.seeds: "10_s7")."""
    return seeds.seeded_runs(config, name, m.name, method_sets(config, config["tasks"][name], m, rag=rag))


def method_tasks(config: dict, method: str) -> list[str]:
    """The tasks fine-tuned with ``method``."""
    return [name for name, task in config["tasks"].items() if method in ft_methods(config, task)]


def search_lrs(config: dict, name: str = "full") -> list[float]:
    """The learning rates a task with validation searches with fine-tuning method ``name`` (its search_key)."""
    return method(name).search_lrs(config)


def check_config(config: dict, source: str = "config") -> None:
    """Reject grids the schema cannot: one line each, naming the key and what is wrong."""
    count = config["paraphrases"]["count"]
    if config["chunking"]["min_words"] > config["chunking"]["max_words"]:
        raise KinjectError(source, "chunking.min_words is larger than chunking.max_words")
    if config["finetune"]["batch_size"] % config["finetune"]["per_device_batch_size"]:
        raise KinjectError(source, "finetune.batch_size must be a multiple of finetune.per_device_batch_size")
    run_retrievers(config, source)
    for name, task in config["tasks"].items():
        key = f"tasks.{name}"
        q, kb = task["questions"], task["knowledge_base"]
        if max(task["paraphrase_sets"]) > count:
            raise KinjectError(source, f"{key}.paraphrase_sets asks for set {max(task['paraphrase_sets'])} "
                               f"but paraphrases.count is {count}")
        extra = sorted(set(ft_rag_sets(task)) - set(task["paraphrase_sets"]))
        if extra:
            raise KinjectError(source, f"{key}.ft_rag_paraphrase_sets {extra} are not in paraphrase_sets")
        if not question_source(q, f"{key}.questions", source).few_shot and any(s > 0 for s in task["shots"]):
            raise KinjectError(source, f"{key}.shots: {q['source']} questions have no dev split for few-shot; use [0]")
        check_knowledge_base(config, kb, f"{key}.knowledge_base", source)
        if "validation" in task and "search" not in config["finetune"]:
            raise KinjectError(source, f"{key}.validation is set but finetune.search is missing")
        if "validation" in task and task["validation"]["paraphrases"] > count:
            raise KinjectError(source, f"{key}.validation.paraphrases is larger than paraphrases.count")
        for m in (method(name, f"{key}.finetune_methods" if "finetune_methods" in task else "finetune.methods",
                         source) for name in ft_methods(config, task)):
            if "validation" in task and not m.search_lrs(config):
                raise KinjectError(source, f"{key} fine-tunes with {m.name} and has validation, but {m.search_key} "
                                   f"is missing ({m.label}'s learning rates to search)")
            if m.check:
                m.check(config, key, task, source)
    check_controls(config, source)
    check_method_sets(config, source)
    seeds.check(config, source, {m.name for task in config["tasks"].values() for m in task_methods(config, task)},
                {p for task in config["tasks"].values() for p in task["paraphrase_sets"]})


def check_method_sets(config: dict, source: str) -> None:
    """A control's sets (its config key ``sets_key``: finetune.steps_matched) are sets > 0 of some task fine-tuned with
    the method it matches: one line naming the key otherwise."""
    for m in (m for m in METHODS.values() if m.sets_key):
        tasks = {name: task for name, task in config["tasks"].items() if m.matches in ft_methods(config, task)}
        for p in m.listed_sets(config):
            if p == 0:
                raise KinjectError(source, f"{m.sets_key}: set 0 is the original chunks, {METHODS[m.matches].label} "
                                   f"itself; list paraphrase sets > 0")
            if not any(p in task["paraphrase_sets"] for task in tasks.values()):
                raise KinjectError(source, f"{m.sets_key}: set {p} is in no paraphrase_sets of a task fine-tuned with "
                                   f"{m.matches} ({', '.join(tasks) or 'none'})")


def check_controls(config: dict, source: str) -> None:
    for name, control in config["evaluation"]["controls"].items():
        key = f"evaluation.controls.{name}"
        if name in config["tasks"]:
            raise KinjectError(source, f"{key}: a control is a question set outside every task; {name} is a task")
        question_source(control, key, source, control=True)


def formats(task: dict) -> list[str]:
    """The scoring formats of a task (tasks.<t>.formats; the schema's default is the paper's: options)."""
    return list(task["formats"])

def check_knowledge_base(config: dict, kb: dict, key: str, source: str) -> None:
    """A task's knowledge base (at config key ``key``): its registered source (kinject.knowledge.sources), the
    keys it needs and takes, its own checks, and the page selection of a source of MediaWiki pages."""
    origin = knowledge_source(kb, key, source)
    for required in origin.required:
        if required not in kb:
            raise KinjectError(source, f"{key}.{required} is required for source {origin.name}")
    others = {k: s.name for s in KNOWLEDGE_SOURCES.values() if s is not origin for k in s.own_keys}
    foreign = sorted(k for k in kb if k in others and k not in origin.own_keys)
    if foreign:
        raise KinjectError(source, f"{key}.{foreign[0]} is only for source {others[foreign[0]]}")
    if origin.check:
        origin.check(config, kb, key, source)
    if not origin.pages and any(k in kb for k in ("titles", "hub_pages_file", "events")):
        raise KinjectError(source, f"{key}: titles, hub_pages_file and events select Wikipedia pages; source "
                           f"{kb['source']} reads every document")
    if "titles" in kb and "hub_pages_file" in kb:
        raise KinjectError(source, f"{key}: set titles or hub_pages_file, not both")
    if "events" in kb:
        if "hub_pages_file" not in kb:
            raise KinjectError(source, f"{key}.events needs hub_pages_file (the month pages)")
        try:
            start, end = (date.fromisoformat(kb["events"][bound]) for bound in ("start", "end"))
        except ValueError as exc:
            raise KinjectError(source, f"{key}.events: {exc}") from None
        if start > end:
            raise KinjectError(source, f"{key}.events.start is after events.end")


def cells(config: dict) -> list[Cell]:
    """Every cell of the grid: base, FT per paraphrase set, RAG per K, FT+RAG per set and K; per shots and
    scoring format; a seeded model's cells under each extra training seed (kinject.training.seeds)."""
    ks = rag_ks(config)
    out = []
    for model in config["models"]:
        for name, task in config["tasks"].items():
            for shots, fmt in ((s, f) for s in sorted(task["shots"]) for f in formats(task)):
                at = {"model": model, "task": name, "shots": shots, "format": fmt}
                out.append(Cell(method="base", k=0, **at))
                out += [Cell(method="rag", k=k, **at) for k in ks]
                for m in task_methods(config, task):
                    out += [Cell(method=m.cell(p), k=0, **at) for p in method_runs(config, name, m)]
                    out += [Cell(method=m.cell(p, rag=True), k=k, **at) for p in method_runs(config, name, m, rag=True)
                            for k in ks]
                for r in task_retrievers(config, task):  # each other retriever's cells (the run's seed's models)
                    out += [Cell(method=rag_cell("rag", r.name), k=k, **at) for k in retriever_ks(r, ks)]
                    out += [Cell(method=rag_cell(m.cell(p, rag=True), r.name), k=k, **at) for m in task_methods(config, task)
                            for p in method_sets(config, task, m, rag=True) for k in retriever_ks(r, ks)]
    return out


def task_retrievers(config: dict, task: dict) -> list:
    """The retrievers with cells of their own on a task (retrieval.retrievers but dense, whose cells are the
    paper's RAG and FT+RAG): every one, the oracle only where the task's questions name their source chunk."""
    if not rag_ks(config):
        return []
    sourced = QUESTION_SOURCES[task["questions"]["source"]].sourced
    return [RETRIEVERS[name] for name in config["retrieval"]["retrievers"]
            if name != RAG_RETRIEVER and (sourced or not RETRIEVERS[name].oracle)]


def finetuned_checkpoints(config: dict) -> list[dict]:
    """Every fine-tuned model of the grid under the run's seed: {model, task, method (a method's name:
    finetune.methods, or a control of one), p} (the forgetting controls and the loss figure read these; an extra
    training seed's models are scored on the task only)."""
    return [{"model": model, "task": name, "method": m.name, "p": p}
            for model in config["models"] for name, task in config["tasks"].items()
            for m in task_methods(config, task) for p in method_sets(config, task, m)]


def control_scores(config: dict) -> list[str]:
    """Every score file of the controls: each control on each base model and each fine-tuned checkpoint."""
    controls = list(config["evaluation"]["controls"])
    scored = [(model, "base") for model in config["models"]]
    scored += [(c["model"], f"{c['task']}/{METHODS[c['method']].cell(c['p'])}") for c in finetuned_checkpoints(config)
               if METHODS[c["method"]].rag]
    return [CONTROL_SCORE.format(model=model, method=at, control=c) for model, at in scored for c in controls]


def rag_ks(config: dict) -> list[int]:
    """The retrieval depths K > 0, ascending (K = 0 is no retrieval)."""
    return [k for k in sorted(config["retrieval"]["k"]) if k > 0]


def evaluation_cells(config: dict) -> dict[str, list[tuple[str, int]]]:
    """(method, K) of the cells one job of each evaluation rule scores, in one process with one model load.

    A job is one model checkpoint at one shot count and scoring format: the base model scores base (K=0) and every RAG K; a
    fine-tuned checkpoint scores FT (K=0), and in a second job every FT+RAG K. ``{p}`` is the paraphrase set.
    """
    ks = rag_ks(config)
    cells = {"evaluate_base": [("base", 0)] + [("rag", k) for k in ks]}
    for m in METHODS.values():
        cells[m.rule("evaluate")] = [(m.cell("{p}"), 0)]
        if m.rag:
            cells[m.rule("evaluate_rag")] = [(m.cell("{p}", rag=True), k) for k in ks]
    for r in extra_retrievers(config):  # another retriever's cells: jobs of their own, so dense's are unchanged
        cells[retriever_rule("evaluate_rag", r.name)] = [(rag_cell("rag", r.name), k) for k in retriever_ks(r, ks)]
        for m in (m for m in METHODS.values() if m.rag):
            cells[retriever_rule(m.rule("evaluate_rag"), r.name)] = [(rag_cell(m.cell("{p}", rag=True), r.name), k)
                                                                     for k in retriever_ks(r, ks)]
    return cells


def extra_retrievers(config: dict) -> list:
    """The listed retrievers but dense, where RAG runs (retrieval.k has K > 0)."""
    if not rag_ks(config):
        return []
    return [RETRIEVERS[name] for name in config["retrieval"]["retrievers"] if name != RAG_RETRIEVER]


def retriever_rule(rule: str, retriever: str) -> str:
    """The evaluation rule of a retriever's cells: evaluate_rag_bm25 (the base model's), evaluate_ftrag_bm25."""
    return f"{rule}_{retriever}"


def evaluation_jobs(config: dict) -> dict[str, list[dict]]:
    """The wildcards of every evaluation job ``snakemake all`` runs, per rule (for the benchmarks, which pick
    evaluation jobs without building a DAG; tests/test_grid.py checks it against the DAG's)."""
    jobs: dict[str, list[dict]] = {rule: [] for rule in evaluation_cells(config)}
    rag = bool(rag_ks(config))
    for model in config["models"]:
        for task_name, task in config["tasks"].items():
            for shots, fmt in ((s, f) for s in sorted(task["shots"]) for f in formats(task)):
                at = {"model": model, "task": task_name, "shots": shots, "format": fmt}
                jobs["evaluate_base"].append(at)
                for m in task_methods(config, task):
                    jobs[m.rule("evaluate")] += [{**at, "p": p} for p in method_runs(config, task_name, m)]
                    if rag and m.rag:
                        jobs[m.rule("evaluate_rag")] += [{**at, "p": p} for p in method_runs(config, task_name, m, rag=True)]
                for r in task_retrievers(config, task):  # the run's seed's models only
                    jobs[retriever_rule("evaluate_rag", r.name)].append(at)
                    for m in (m for m in task_methods(config, task) if m.rag):
                        jobs[retriever_rule(m.rule("evaluate_rag"), r.name)] += [
                            {**at, "p": p} for p in method_sets(config, task, m, rag=True)]
    return jobs


def dry_run_jobs(output: str) -> dict[str, int]:
    """Jobs per rule in the 'Job stats' table of ``snakemake -n`` output, without the total ({} when
    nothing is to be done): what the tests compare with their hand-counted jobs."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}
