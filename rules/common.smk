# Input functions and wildcard helpers shared by every stage. The grid itself lives in kinject.grid.
from kinject.llm import reply_settings
from kinject.questions import mmlu_csv_files, mmlu_settings
from kinject.settings import canonical, job_resources
from kinject.grid import FORMATS, LMEVAL_TASK_DIR, SCORE_PATTERN, cells, evaluation_cells, rag_ks

TASKS = list(config["tasks"])
MODELS = list(config["models"])
CELLS = cells(config)
RAG_KS = rag_ks(config)
EVALUATION_CELLS = evaluation_cells(config)


# Rules that run where snakemake runs, never as cluster jobs: they are light, and the ones that reach the
# network (MediaWiki, the hub, the LLM API) must run on a login node, since compute nodes often have none.
# The rest (build_base_model, hparam_trial, finetune, index_chunks, retrieve, evaluate_*) go to the executor.
localrules:
    all,
    fetch,
    clean_dump,
    make_chunks,
    knowledge_base_report,
    load_mmlu_questions,
    generate_questions,
    select_questions,
    review_questions,
    paraphrase_chunks,
    paraphrase_set,
    validation_paraphrases,
    choose_hparams,
    validated_model,
    review_sheet,
    extract_embedder,
    lmeval_task,
    tables,
    figures,


wildcard_constraints:
    task="|".join(TASKS),
    model="|".join(MODELS),
    group="[a-z0-9_]+",
    p=r"\d+",
    k=r"\d+",
    shots=r"\d+",
    format="|".join(FORMATS),
    lr=r"[0-9.e+-]+",


def tasks_regex(keep):
    """A wildcard constraint matching exactly the tasks for which keep(task config) holds."""
    names = [name for name, task in config["tasks"].items() if keep(task)]
    return "|".join(names) if names else "(?!)"


def task_cfg(wildcards):
    return config["tasks"][wildcards.task]


def job_settings(rule_name="gpu_rules"):
    """A compute rule's settings from the config: resources.gpu_rules, updated by resources.<rule_name>."""
    return job_resources(config, rule_name)


def compute_resources(rule_name="gpu_rules"):
    """The resources of a compute job, from the config: gpu (0 in the demo: nothing asks SLURM for a GPU),
    gpu_model, mem_mb, runtime, and allow_cpu (0/1: may a job that asked for a GPU run on the CPU).
    Its CPUs are its threads."""
    settings = {k: v for k, v in job_settings(rule_name).items() if k != "cpus_per_task"}
    return {**settings, "allow_cpu": int(config["resources"]["allow_cpu"])}


def compute_threads(rule_name="gpu_rules"):
    """The threads of a compute job, resources.*.cpus_per_task in the config. Snakemake sizes the OMP, MKL
    and OpenBLAS pools by it, the slurm plugin asks for as many CPUs, kinject.cli.rule_main gives torch as many."""
    return job_settings(rule_name)["cpus_per_task"]


def expensive(path):
    """protected(path) under `protect: true` (the default): Snakemake write-protects the output once made and
    refuses to re-run its job until you remove it yourself (see the README on freeing disk)."""
    return protected(path) if config["protect"] else path


def models_regex(keep):
    """A wildcard constraint matching exactly the models for which keep(model config) holds."""
    names = [name for name, model in config["models"].items() if keep(model)]
    return "|".join(names) if names else "(?!)"


def base_model_path(wildcards):
    model = config["models"][wildcards.model]
    return model.get("pretrained") or f"results/models/{wildcards.model}/base"


def base_model_input(wildcards):
    """A locally built or converted base model is a file dependency; a hub id is loaded at run time."""
    return [] if "pretrained" in config["models"][wildcards.model] else base_model_path(wildcards)


def gguf_input(wildcards):
    """A GGUF file given by path is an input (replacing it re-converts); one inside an installed package is
    found at run time, like a hub model."""
    source = config["models"][wildcards.model]["gguf"]
    return [source["path"]] if "path" in source else []


def embedder_input(wildcards=None):
    return "results/embedder" if "package" in config["embedder"] else []


def embedder_path():
    return config["embedder"].get("pretrained") or "results/embedder"


def eval_score_outputs(rule_name):
    """The score files written by one job of an evaluation rule, one per (method, K) it scores."""
    return [
        SCORE_PATTERN.format(model="{model}", task="{task}", method=method, k=k, shots="{shots}", format="{format}")
        for method, k in EVALUATION_CELLS[rule_name]
    ]


def eval_task_inputs(rule_name):
    """The lm-eval task folders of those cells, in the same order."""
    return [LMEVAL_TASK_DIR.format(task="{task}", format="{format}", k=k) for _, k in EVALUATION_CELLS[rule_name]]


def eval_runs(rule_name):
    """(method, K) of each output, the paraphrase set filled in: what each score file records."""
    cells = EVALUATION_CELLS[rule_name]
    return lambda wildcards: [(method.format(**dict(wildcards.items())), k) for method, k in cells]


def groups():
    out = {}
    for name, task in config["tasks"].items():
        out.setdefault(task["group"], set()).update(task["shots"])
    return out


def table_outputs():
    return [
        f"results/tables/{group}_{shots}shot.{ext}"
        for group, shots_set in groups().items()
        for shots in sorted(shots_set)
        for ext in ("csv", "parquet", "md")
    ]


FIGURES = ["paraphrases_vs_accuracy", "train_loss", "accuracy_vs_k"]


def all_outputs():
    return (
        table_outputs()
        + ["results/tables/scores.csv", "results/tables/best_k.csv"]
        + [f"results/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "csv")]
        + expand("results/{task}/knowledge_base_report.json", task=TASKS)
    )


def mmlu_csv_input(wildcards):
    """A task's MMLU CSV files (source: mmlu_csv), so that editing one re-runs its loader; none from the hub."""
    spec = task_cfg(wildcards)["questions"]
    if spec["source"] != "mmlu_csv":
        return []
    return [str(path) for path in mmlu_csv_files(spec["path"], spec["subject"]).values() if path is not None]


def fetch_input(wildcards):
    """The dump (source: dump) and the file naming the knowledge base's pages (titles or hub pages), if any."""
    kb = task_cfg(wildcards)["knowledge_base"]
    named = [kb[key] for key in ("titles", "hub_pages_file") if key in kb]
    return ([kb["path"]] if kb["source"] == "dump" else []) + named


def mediawiki_api(wildcards):
    """The wiki an API task fetches from. The other mediawiki settings (user_agent, requests_per_second) say
    how politely, not what: the job reads them from the config, so editing them re-fetches nothing."""
    if task_cfg(wildcards)["knowledge_base"]["source"] != "mediawiki":
        return None
    return config["mediawiki"]["api"]


def links_seed(wildcards):
    """The seed of the links' random sample: only where a cap (max_links_per_hub) makes one."""
    return config["seed"] if "max_links_per_hub" in task_cfg(wildcards)["knowledge_base"] else None


def review_input(wildcards):
    """The human accept/reject file counts as an input once it exists (so adding it re-runs the review); until
    then review_questions stops with one line saying it is missing (questions.review: skip goes without)."""
    review = task_cfg(wildcards)["questions"]["review"]
    return review if review != "skip" and os.path.exists(review) else []


GENERATED = tasks_regex(lambda t: t["questions"]["source"] == "generated")


def generated_paraphrases_input(wildcards):
    if int(wildcards.k) == 0:
        return []
    return f"results/{wildcards.task}/paraphrases/generated.parquet"


def search_lrs():
    return [f"{lr:g}" for lr in config["finetune"].get("search", {}).get("lr", [])]


def hparams_input(wildcards):
    if "validation" in task_cfg(wildcards):
        return f"results/hparams/{wildcards.model}/{wildcards.task}/chosen.json"
    return []


def fewshot_context(wildcards):
    """evaluation.fewshot_context where it changes the task data (K > 0 and a few-shot task); elsewhere the
    data is the same either way, so editing it re-runs nothing there."""
    if int(wildcards.k) and max(task_cfg(wildcards)["shots"]) > 0:
        return config["evaluation"]["fewshot_context"]
    return "question_only"


def retrieval_input(wildcards):
    if int(wildcards.k) == 0:
        return {}
    return {
        "retrieved": f"results/{wildcards.task}/retrieval/retrieved.parquet",
        "chunks": f"results/{wildcards.task}/chunks.parquet",
    }


def loss_files():
    return [
        f"results/finetune/{model}/{task}/k{p}/train_loss.csv"
        for model in MODELS
        for task, cfg in config["tasks"].items()
        for p in cfg["paraphrase_sets"]
    ]
