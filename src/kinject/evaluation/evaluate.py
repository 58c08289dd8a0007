"""Evaluation with lm-evaluation-harness, unmodified: each question set (with its RAG context) is a task
written as data, a YAML over JSONL files, from the template ``templates/lmeval_task.yaml`` and one scoring
format of ``templates/formats.yaml``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from unittest import mock

import pandas as pd
import yaml

from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet, write_json, write_parquet
from kinject.paths import records_path
from kinject.qa.question_file import read_questions
from kinject.reporting.stats import wilson
from kinject.training.adapters import check_adapter

log = logging.getLogger(__name__)

CONTEXT_SEPARATOR = "\n\n"


def retrieved_contexts(question_ids, k: int, retrieved_parquet, chunks_parquet) -> pd.Series:
    """Per question id, the texts of its top-``k`` retrieved chunks in rank order, joined by blank lines."""
    chunks = read_parquet(chunks_parquet, columns=["chunk_id", "text"]).drop_duplicates("chunk_id")
    hits = read_parquet(retrieved_parquet, columns=["question_id", "rank", "chunk_id"])
    hits = hits[hits["rank"] < k].sort_values(["question_id", "rank"])
    hits = hits.merge(chunks, on="chunk_id", how="left")
    unknown = hits["chunk_id"][hits["text"].isna()]
    if len(unknown):
        raise KinjectError(retrieved_parquet, f"chunk {unknown.iloc[0]!r} is not in {chunks_parquet}; "
                                              "re-run retrieval")
    found = hits.groupby("question_id").size().reindex(question_ids, fill_value=0)
    need = min(k, len(chunks))
    short = found[found < need]
    if len(short):
        raise KinjectError(retrieved_parquet, f"question {short.index[0]!r} has {short.iloc[0]} retrieved "
                                              f"chunk(s) of rank < {k}, needs {need}; re-run retrieval")
    return hits.groupby("question_id")["text"].agg(CONTEXT_SEPARATOR.join).reindex(question_ids)


FEWSHOT_CONTEXT = ("question_only", "every_example")


def task_docs(questions_parquet, k: int = 0, retrieved_parquet=None, chunks_parquet=None, *,
              fewshot_context: str = "question_only") -> pd.DataFrame:
    """The questions as lm-eval docs: id, question, choices, answer, context, split.

    ``context`` is the question's top-``k`` retrieved chunks ('' when k == 0). The dev questions are the
    few-shot examples: with ``fewshot_context='question_only'`` they carry no chunks, so a 5-shot prompt
    holds K chunks (for the question asked), not 6 x K; ``every_example`` gives each example its own K.
    """
    if fewshot_context not in FEWSHOT_CONTEXT:
        raise KinjectError(questions_parquet, f"fewshot_context {fewshot_context!r} is not one of {FEWSHOT_CONTEXT}")
    questions = read_questions(questions_parquet)
    if k < 0:
        raise KinjectError(questions_parquet, f"k must be at least 0 (got {k})")
    if k and (retrieved_parquet is None or chunks_parquet is None):
        raise KinjectError(questions_parquet, f"k={k} needs the retrieved chunks and the chunks files")
    if not (questions["split"] == "test").any():
        raise KinjectError(questions_parquet, "has no test questions")
    context = (retrieved_contexts(questions["id"], k, retrieved_parquet, chunks_parquet).to_numpy()
               if k else "")
    questions = questions.assign(context=context)
    if fewshot_context == "question_only":
        questions.loc[questions["split"] == "dev", "context"] = ""
    return questions


def _write_jsonl(path: Path, docs: pd.DataFrame) -> None:
    lines = (json.dumps({"id": str(d.id), "question": d.question, "choices": [str(c) for c in d.choices],
                         "answer": int(d.answer), "context": d.context}, ensure_ascii=False)
             for d in docs.itertuples())
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


class _TaskDumper(yaml.SafeDumper):
    """Strings with newlines double-quoted on one line, as lm-eval's own task YAMLs write prompts."""


_TaskDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if "\n" in value else None))


def _template(name: str) -> dict:
    return yaml.safe_load(resources.files("kinject").joinpath(f"templates/{name}").read_text())


def task_config(task_name: str, data_files: dict[str, str], k: int, fmt: str = "options",
                subject: str = "") -> dict:
    """The template filled in with one scoring format: ``data_files`` maps split ('test', maybe 'dev') to a
    JSONL path; ``subject`` names the questions' topic where the format has a description (letters)."""
    formats = _template("formats.yaml")
    if fmt not in formats:
        raise KinjectError(task_name, f"unknown scoring format {fmt!r}; formats.yaml has {', '.join(formats)}")
    config = _template("lmeval_task.yaml")
    config.update(formats[fmt])
    if "description" in config:
        config["description"] = config["description"].format(subject=" ".join(subject.split("_")))
    config["task"] = task_name
    config["dataset_kwargs"]["data_files"] = data_files
    if "dev" not in data_files:
        del config["fewshot_split"]
        config.pop("fewshot_config", None)
    config["metadata"].update(k=k, format=fmt)
    return config


def write_lmeval_task(questions_parquet, out_dir, task_name: str, *, k: int = 0, retrieved_parquet=None,
                      chunks_parquet=None, fmt: str = "options", subject: str = "",
                      fewshot_context: str = "question_only") -> Path:
    """Write test.jsonl, dev.jsonl (when there are dev rows) and ``<task_name>.yaml`` into ``out_dir``.

    The YAML names its data files by absolute path (lm-eval resolves relative ones against the working
    directory, not the YAML), so any working directory works as long as ``out_dir`` stays where it is.
    """
    docs = task_docs(questions_parquet, k, retrieved_parquet, chunks_parquet, fewshot_context=fewshot_context)
    final = Path(out_dir).absolute()
    splits = [s for s in ("test", "dev") if (docs["split"] == s).any()]
    with atomic_path(final, directory=True) as tmp:
        for split in splits:
            _write_jsonl(tmp / f"{split}.jsonl", docs[docs["split"] == split])
        config = task_config(task_name, {s: str(final / f"{s}.jsonl") for s in splits}, k, fmt, subject)
        (tmp / f"{task_name}.yaml").write_text(yaml.dump(config, Dumper=_TaskDumper, sort_keys=False),
                                               encoding="utf-8")
    log.info("lm-eval task %s: %s questions (k=%d, format %s, few-shot context %s) in %s", task_name,
             dict(docs["split"].value_counts()), k, fmt, fewshot_context, final)
    return final


def read_task(path) -> dict:
    """A task YAML written by write_lmeval_task, checked: its data files must still be where it says."""
    if not Path(path).is_file():
        raise KinjectError(path, "task file not found")
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for data_file in config["dataset_kwargs"]["data_files"].values():
        if not Path(data_file).is_file():
            raise KinjectError(path, f"data file {data_file} not found (was the task folder moved? "
                                     "re-run rule lmeval_task)")
    return config


def _count_lines(path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for _ in fh)


@dataclass(frozen=True)
class Run:
    """One score file: the lm-eval task (folder + name) scored, where its JSON goes (its per-question
    records beside it, ``kinject.paths.records_path``), and what it records."""

    task_dir: str | Path
    task_name: str
    out_json: str | Path
    meta: dict = field(default_factory=dict)


@contextlib.contextmanager
def lmeval_environment(model):
    """What every lm-eval call here runs in: the HF libraries offline when ``model`` is a local folder (set
    before they are imported), and a private datasets cache, so parallel jobs never share (or lock) one."""
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if Path(model).is_dir() else {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, offline))
        import datasets

        cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="kinject-datasets-"))
        stack.enter_context(mock.patch.object(datasets.config, "HF_DATASETS_CACHE", Path(cache)))
        yield


def load_lm(model, *, precision: str = "fp32", batch_size: int = 8, device: str | None = None,
            shared_prefix: bool = True, max_truncated_fraction: float = 0.0, task_files: dict | None = None,
            **model_args):
    """lm-eval's model ``kinject-hf`` (kinject.evaluation.shared_prefix, found through lm-eval's registry) over ``model``
    (hub id or local folder), its weights loaded in ``precision`` (auto, bf16, fp32: kinject.precision, resolved
    on ``device``; the choice is the model's ``precision`` attribute): one pass per distinct prompt when
    ``shared_prefix``, else lm-eval's own HF scoring; both refuse prompts lm-eval would cut (see there)."""
    import torch
    from lm_eval.api.registry import get_model

    from kinject.evaluation.shared_prefix import NAME
    from kinject.precision import resolve, torch_dtype

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    chosen = resolve(precision, "cuda" if device.startswith("cuda") else "cpu")
    args = {"pretrained": str(model), "dtype": torch_dtype(chosen.name), "shared_prefix": shared_prefix,
            "max_truncated_fraction": max_truncated_fraction, "task_files": task_files, **model_args}
    lm = get_model(NAME).create_from_arg_obj(args, {"batch_size": batch_size, "device": device})
    lm.precision = chosen
    return lm


def score_tasks(lm, task_dirs, names, *, shots: int, seed: int, limit: int | None = None,
                log_samples: bool = False) -> dict:
    """lm-eval's ``simple_evaluate`` of the tasks ``names`` found in ``task_dirs`` with the loaded ``lm``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model=lm, tasks=list(names), num_fewshot=shots, limit=limit,
        task_manager=TaskManager(include_path=[str(d) for d in dict.fromkeys(task_dirs)], include_defaults=False),
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        log_samples=log_samples)


RECORD_COLUMNS = ["question_id", "gold", "chosen", "loglik", "correct"]


def question_records(samples: list[dict], source) -> pd.DataFrame:
    """One row per question from lm-eval's logged samples (``log_samples=True``): question id, gold option,
    chosen option (highest log-likelihood, the first on a tie, as lm-eval's ``acc``), each option's
    log-likelihood, and correct (lm-eval's own ``acc`` of the question, checked against chosen == gold)."""
    rows = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        loglik = [float(resp[0]) for resp in sample["filtered_resps"]]
        gold, correct = int(sample["target"]), bool(sample["acc"])
        chosen = int(max(range(len(loglik)), key=lambda i: (loglik[i], -i)))
        if (chosen == gold) != correct:
            raise KinjectError(source, f"question {sample['doc']['id']!r}: lm-eval's acc is {correct} but option "
                                       f"{chosen} has the highest log-likelihood and the answer is {gold}")
        rows.append({"question_id": str(sample["doc"]["id"]), "gold": gold, "chosen": chosen, "loglik": loglik,
                     "correct": correct})
    records = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    if records["question_id"].duplicated().any():
        raise KinjectError(source, f"question {records['question_id'][records['question_id'].duplicated()].iloc[0]!r} "
                                   "was scored twice")
    return records


def run_lmeval(model, runs: list[Run], *, shots: int = 0, batch_size: int = 8, device: str | None = None,
               seed: int = 1234, precision: str = "fp32", shared_prefix: bool = True,
               max_truncated_fraction: float = 0.0, adapter=None) -> list[dict]:
    """Score ``model`` (hub id or local folder) on every run's task in one lm-eval call: the model is loaded
    once (weights in ``precision``) and lm-eval batches all tasks' requests together. Writes each run's scores
    JSON, once all are scored. With ``adapter`` (an adapter run's folder, kinject.training.adapters) the model scored is
    ``model`` with that adapter applied, unmerged, by lm-eval's HF model (its ``peft`` argument).

    Accuracy is lm-eval's own ``acc`` (highest log-likelihood option), and the per-question records written
    beside each score file (``question_records``) are checked to give exactly it, so tables computed from
    the records and the score files never disagree; the score file adds the Wilson 95% interval. Before any
    scoring, prompts that lm-eval would cut to the model's max_length are counted per task: more than
    ``max_truncated_fraction`` of a task's questions stops the job naming its task file; each score file
    records the count (``n_truncated``) and the scorer (``kinject-hf`` with ``shared_prefix``, else ``hf``).
    """
    if not runs:
        raise KinjectError(str(model), "nothing to evaluate (no tasks)")
    configs = []
    for run in runs:  # every task is checked before the model is loaded
        yaml_path = Path(run.task_dir) / f"{run.task_name}.yaml"
        config = read_task(yaml_path)
        dev = config["dataset_kwargs"]["data_files"].get("dev")
        n_dev = _count_lines(dev) if dev else 0
        if shots > n_dev:
            raise KinjectError(yaml_path, f"{shots}-shot evaluation needs {shots} dev questions; the task has {n_dev}")
        configs.append(config)
    names = [run.task_name for run in runs]
    if len(set(names)) < len(names):
        raise KinjectError(runs[0].task_dir, f"task names repeat in one evaluation: {names}")
    if adapter is not None:
        check_adapter(adapter, model)
    with lmeval_environment(model):
        lm = load_lm(model, precision=precision, batch_size=batch_size, device=device, shared_prefix=shared_prefix,
                     max_truncated_fraction=max_truncated_fraction,
                     task_files={run.task_name: str(Path(run.task_dir) / f"{run.task_name}.yaml") for run in runs},
                     **({"peft": str(adapter)} if adapter is not None else {}))
        out = score_tasks(lm, [run.task_dir for run in runs], names, shots=shots, seed=seed, log_samples=True)
    all_scores, all_records = [], []
    for run, config in zip(runs, configs, strict=True):
        result, truncation = out["results"][run.task_name], lm.truncation[run.task_name]
        records = question_records(out["samples"][run.task_name], Path(run.task_dir) / f"{run.task_name}.yaml")
        n_correct = int(records["correct"].sum())
        if abs(n_correct / len(records) - result["acc,none"]) > 1e-9:
            raise KinjectError(run.task_dir, f"the {len(records)} records give accuracy {n_correct / len(records)}, "
                                             f"lm-eval {result['acc,none']}")
        all_records.append(records)
        all_scores.append({
            "accuracy": n_correct / len(records),
            "n_correct": n_correct,
            "accuracy_ci95_wilson": list(wilson(n_correct, len(records))),
            "accuracy_stderr": result["acc_stderr,none"],
            "accuracy_norm": result["acc_norm,none"],
            "n_questions": out["n-samples"][run.task_name]["effective"],
            "n_truncated": truncation["n_truncated"],
            "max_prompt_tokens": truncation["max_tokens"],
            "max_length": truncation["max_length"],
            "shots": shots,
            "k": config["metadata"]["k"],
            "format": config["metadata"]["format"],
            **lm.precision.record,  # the precision it ran in (auto resolved here), the device and its hardware
            "scorer": lm.scorer,
            "lm_eval_version": metadata.version("lm_eval"),
            **({"adapter": str(adapter), "peft_version": metadata.version("peft")} if adapter is not None else {}),
            **run.meta,
        })
    for run, scores, records in zip(runs, all_scores, all_records, strict=True):
        write_parquet(records_path(run.out_json), records)
        write_json(run.out_json, scores)
        log.info("%s on %s (%d-shot): accuracy %.4f (%s, %d of %d prompts truncated)", model, run.task_name, shots,
                 scores["accuracy"], scores["scorer"], scores["n_truncated"], scores["n_questions"])
    return all_scores
