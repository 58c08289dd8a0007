# Input functions and wildcard helpers shared by every stage. The grid itself lives in kinject.grid.
from kinject.grid import SCORE_PATTERN, cells, evaluation_cells, rag_ks

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
    load_mmlu_questions,
    generate_questions,
    select_questions,
    review_questions,
    paraphrase_chunks,
    paraphrase_set,
    validation_paraphrases,
    choose_hparams,
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
    lr=r"[0-9.e+-]+",


def tasks_regex(keep):
    """A wildcard constraint matching exactly the tasks for which keep(task config) holds."""
    names = [name for name, task in config["tasks"].items() if keep(task)]
    return "|".join(names) if names else "(?!)"


def task_cfg(wildcards):
    return config["tasks"][wildcards.task]


def gpu_resources(rule_name="gpu_rules"):
    """Resources of a GPU rule, from the config (gpu=0 in the demo: nothing asks SLURM for a GPU)."""
    res = config["resources"]
    return {**res["gpu_rules"], **res.get(rule_name, {})}


def protect(path):
    """`protected()` when config `protect` is true (fine-tuned checkpoints, base-model builds, raw fetches)."""
    return protected(path) if config["protect"] else path


def base_model_path(wildcards):
    model = config["models"][wildcards.model]
    return model.get("pretrained") or f"results/models/{wildcards.model}/base"


def base_model_input(wildcards):
    """A locally built base model is a file dependency; a hub id is loaded at run time."""
    return [] if "pretrained" in config["models"][wildcards.model] else base_model_path(wildcards)


def embedder_input(wildcards=None):
    return "results/embedder" if "package" in config["embedder"] else []


def embedder_path():
    return config["embedder"].get("pretrained") or "results/embedder"


def eval_score_outputs(rule_name):
    """The score files written by one job of an evaluation rule, one per (method, K) it scores."""
    return [
        SCORE_PATTERN.format(model="{model}", task="{task}", method=method, k=k, shots="{shots}")
        for method, k in EVALUATION_CELLS[rule_name]
    ]


def eval_task_inputs(rule_name):
    """The lm-eval task folders of those cells, in the same order."""
    return [f"results/{{task}}/lmeval/k{k}" for _, k in EVALUATION_CELLS[rule_name]]


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
    )


def fetch_input(wildcards):
    kb = task_cfg(wildcards)["knowledge_base"]
    return kb["path"] if kb["source"] == "dump" else kb["hub_pages_file"]


def review_input(wildcards):
    """The human accept/reject file counts as an input once it exists (so adding it re-runs the review)."""
    review = task_cfg(wildcards)["questions"].get("review")
    return review if review and os.path.exists(review) else []


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
