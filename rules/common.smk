# Input functions and wildcard helpers shared by every stage. The grid itself lives in kinject.grid, every
# artifact's path in kinject.paths.
from kinject.qa.llm import reply_settings
from kinject.qa.sets import control_settings, mmlu_settings
from kinject.settings import canonical, job_resources
from kinject.grid import FORMATS, cells, control_scores, evaluation_cells, extra_retrievers, finetuned_checkpoints, rag_ks, retriever_rule
from kinject.grid import search_lrs as method_lrs
from kinject.knowledge.sources import KNOWLEDGE_SOURCES
from kinject.qa.sources import QUESTION_SOURCES
from kinject.training.methods import METHODS
from kinject.training import seeds as training_seeds
from kinject.paths import CONTROL_SCORE, HUB_CONTROL_DIR, HUB_DATASET_DIR, HUB_EMBEDDER_DIR, HUB_MODEL_DIR, LMEVAL_TASK_DIR, MANIFEST
from kinject.paths import QUESTION_CLUSTERS, RECORDS_PATTERN, REVISIONS, SCORE_PATTERN, records_path, results_root, rooted, work_dir
from kinject.paths import LMEVAL_TASK_BY
from kinject.paths import ARTICLES, BASE_MODEL, CANDIDATES, CHUNKS, CLEAN_COUNTS, CONTROL_LMEVAL, CONTROL_QUESTIONS
from kinject.paths import EMBEDDER_PACKAGE, FETCH_COUNTS, GENERATED_PARAPHRASES, INDEX, KB_REPORT, PAGES, PARAPHRASE_SET
from kinject.paths import FIGURE, QUESTIONS, RETRIEVED, SCORES_TABLE, TABLE, SELECTED, VALIDATION_PARAPHRASES
from kinject.evaluation.retrievers import RAG_RETRIEVER, RETRIEVERS, cell_retriever, index_chain, rag_cell, retrieved_file, run_retrievers
from kinject.provenance.hub import OFFLINE_ENV, check_local_models, hub_artifacts, reranker_dir
from kinject.provenance.lock import check_hub_lock, check_local_files, local_sources, read_lock

# Every artifact lives under the study's results root (config `study`: results/<study>; unset: results/), so
# two studies in one checkout (the demo, the paper) never read or overwrite each other's files.
RESULTS = results_root(config)


def res(path):
    """An artifact path (written here as results/...) under the study's results root."""
    return rooted(path, RESULTS)


def logpath(path):
    """A job's log (written here as logs/...) under the study's logs: logs/<study>/..., or logs/ when unset."""
    return f"logs/{config['study']}/{path[len('logs/'):]}" if config.get("study") else path


TASKS = list(config["tasks"])
MODELS = list(config["models"])
CONTROLS = list(config["evaluation"]["controls"])
CELLS = cells(config)
RAG_KS = rag_ks(config)
RUN_RETRIEVERS = run_retrievers(config)  # the retrievers listed (kinject.evaluation.retrievers), checked
RETRIEVER = RETRIEVERS[RAG_RETRIEVER]  # the RAG cells' retriever: its index file
EVALUATION_CELLS = evaluation_cells(config)
HUB = hub_artifacts(config)
# config `lock`: hub downloads at its commits; a local file whose sha256 differs from it stops here, one line
LOCK = read_lock(config)
check_local_files(config, LOCK)
check_hub_lock(HUB, LOCK, config.get("lock"))
# a model given as a local folder lacking config.json, weights or a tokenizer: one line, before any job
check_local_models(config)
# Every job reads the hub only from the folders the download rules made: switched off for the workflow and so
# for every job it starts, here and on SLURM nodes (kinject.provenance.hub.download, on the submit host, switches it back on).
os.environ.update(OFFLINE_ENV)


# Rules that run where snakemake runs, never as cluster jobs: they are light, and the ones that reach the
# network (MediaWiki, the hub, the LLM API) must run on a login node, since compute nodes often have none.
# The rest (build_base_model, hparam_trial, finetune, index_chunks, retrieve, evaluate_*) go to the executor.
localrules:
    all,
    download_model,
    download_embedder,
    download_reranker,
    download_dataset,
    manifest,
    fetch,
    clean_dump,
    make_chunks,
    knowledge_base_report,
    load_corpus,
    load_mmlu_questions,
    load_table_questions,
    generate_questions,
    select_questions,
    review_questions,
    paraphrase_chunks,
    paraphrase_set,
    validation_paraphrases,
    download_control_dataset,
    control_questions,
    control_lmeval_task,
    forgetting,
    review_sheet,
    extract_embedder,
    retrieval_tables,
    lmeval_task,
    question_clusters,
    tables,
    figures,


wildcard_constraints:
    task="|".join(TASKS),
    model="|".join(MODELS),
    group="[a-z0-9_]+",
    p=training_seeds.PATTERN,  # a paraphrase set, tagged with an extra training seed's (10_s7: kinject.training.seeds)
    k=r"\d+",
    shots=r"\d+",
    format="|".join(FORMATS),
    lr=r"[0-9.e+-]+",
    control="|".join(CONTROLS) or "(?!)",


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
    gpu_model, mem_mb, runtime (per attempt: runtime_per_attempt), and allow_cpu (0/1: may a job that asked for a
    GPU run on the CPU).
    Its CPUs are its threads."""
    settings = {k: v for k, v in job_settings(rule_name).items() if k != "cpus_per_task"}
    return {**settings, "runtime": runtime_per_attempt(settings["runtime"]),
            "allow_cpu": int(config["resources"]["allow_cpu"])}


def runtime_per_attempt(minutes):
    """A compute job's runtime: the config's minutes on its first attempt, twice them on the retry the SLURM
    profile allows (`retries: 1`). A job SLURM stops at its time limit gets SIGTERM: a training job saves a
    checkpoint first (kinject.training.callbacks), and its retry resumes from it with time to finish."""
    return lambda wildcards, attempt: minutes * attempt


def compute_threads(rule_name="gpu_rules"):
    """The threads of a compute job, resources.*.cpus_per_task in the config. Snakemake sizes the OMP, MKL
    and OpenBLAS pools by it, the slurm plugin asks for as many CPUs, kinject.cli.rule_main gives torch as many."""
    return job_settings(rule_name)["cpus_per_task"]


def expensive(path):
    """protected(path) under `protect: true` (the default): Snakemake write-protects the output once made and
    refuses to re-run its job until you remove it yourself (see docs/reruns.md on freeing disk)."""
    return protected(path) if config["protect"] else path


def models_regex(keep):
    """A wildcard constraint matching exactly the models for which keep(model config) holds."""
    names = [name for name, model in config["models"].items() if keep(model)]
    return "|".join(names) if names else "(?!)"


def base_model_path(wildcards):
    """A model by hub id: the folder rule download_model makes; a local folder as given; else the built base."""
    model = config["models"][wildcards.model]
    if res(HUB_MODEL_DIR.format(model=wildcards.model)) in HUB:
        return res(HUB_MODEL_DIR.format(model=wildcards.model))
    return model.get("pretrained") or res(BASE_MODEL.format(model=wildcards.model))


def base_model_input(wildcards):
    """A downloaded, built or converted base model is a file dependency; a local folder is read as it is."""
    path = base_model_path(wildcards)
    return [] if path == config["models"][wildcards.model].get("pretrained") else path


def hub_source(folder):
    """The params of a download job, what it fetches (repo, type, revision asked, file patterns). The lock's commit is
    read by the job: locking what a run resolved re-runs nothing."""
    return canonical(HUB[folder])


EMBEDDER_DIR = res(HUB_EMBEDDER_DIR.format(embedder=config["embedder"]["name"]))
RERANK = config["retrieval"]["rerank"]  # the rerank retriever's settings (the schema fills the defaults)
RERANKER_DIR = res(reranker_dir(RERANK.get("model", "none")))


def reranker_path():
    """The cross-encoder's folder: rule download_reranker's for a hub id, else the local folder given."""
    return RERANKER_DIR if RERANKER_DIR in HUB else RERANK.get("model")


def rerank_settings():
    """The searches and fusions the reranker's candidates are made with, each as its own rules make them (the
    batch sizes, speed only, are read by the job)."""
    return {"dense": {"query_prefix": config["embedder"].get("query_prefix", "")}, "hybrid": config["retrieval"]["hybrid"]}
HUB_MODELS = "|".join(m for m in MODELS if res(HUB_MODEL_DIR.format(model=m)) in HUB) or "(?!)"


def gguf_input(wildcards):
    """A GGUF file given by path is an input (replacing it re-converts); one inside an installed package is
    found at run time, like a hub model."""
    source = config["models"][wildcards.model]["gguf"]
    return [source["path"]] if "path" in source else []


def embedder_input(wildcards=None):
    return [] if embedder_path() == config["embedder"].get("pretrained") else embedder_path()


def embedder_path():
    """The extracted package, the folder rule download_embedder makes for a hub id, or a local folder."""
    if "package" in config["embedder"]:
        return res(EMBEDDER_PACKAGE)
    hub = res(HUB_EMBEDDER_DIR.format(embedder=config["embedder"]["name"]))
    return hub if hub in HUB else config["embedder"]["pretrained"]


def mmlu_hub_input(wildcards):
    """A task's MMLU files as downloaded by download_dataset (for source mmlu), else none."""
    folder = res(HUB_DATASET_DIR.format(task=wildcards.task))
    return folder if folder in HUB else []


def eval_score_outputs(rule_name):
    """The score files written by one job of an evaluation rule, one per (method, K) it scores."""
    return [
        res(SCORE_PATTERN.format(model="{model}", task="{task}", method=method, k=k, shots="{shots}", format="{format}"))
        for method, k in EVALUATION_CELLS[rule_name]
    ]


def eval_record_outputs(rule_name):
    """The per-question records beside those score files, in the same order."""
    return [
        res(RECORDS_PATTERN.format(model="{model}", task="{task}", method=method, k=k, shots="{shots}", format="{format}"))
        for method, k in EVALUATION_CELLS[rule_name]
    ]


def eval_task_inputs(rule_name):
    """The lm-eval task folders of those cells, in the same order: dense's (the paper's) LMEVAL_TASK_DIR, another
    retriever's LMEVAL_TASK_BY."""
    return [res(lmeval_task_dir(cell_retriever(method.partition("-p")[0])[1], k)) for method, k in EVALUATION_CELLS[rule_name]]


def lmeval_task_dir(retriever, k="{k}"):
    if retriever == RAG_RETRIEVER:
        return LMEVAL_TASK_DIR.format(task="{task}", format="{format}", k=k)
    return LMEVAL_TASK_BY.format(task="{task}", format="{format}", retriever=retriever, k=k)


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
        res(TABLE.format(name=f"{group}_{shots}shot.{ext}"))
        for group, shots_set in groups().items()
        for shots in sorted(shots_set)
        for ext in ("csv", "parquet", "md")
    ]


FIGURES = ["paraphrases_vs_accuracy", "train_loss", "accuracy_vs_k"]


def forgetting_outputs():
    """The forgetting table, where controls are scored on some fine-tuned checkpoint."""
    if not (CONTROLS and finetuned_checkpoints(config)):
        return []
    return [res(TABLE.format(name="forgetting.csv")), res(TABLE.format(name="forgetting.md"))]


def all_outputs():
    return (
        table_outputs()
        + forgetting_outputs()
        + [res(SCORES_TABLE), res(TABLE.format(name="best_k.csv"))]
        + [res(TABLE.format(name="comparisons.csv")), res(TABLE.format(name="comparisons.md")), res(TABLE.format(name="paraphrase_trend.csv"))]
        + [res(FIGURE.format(name=f"{name}.{ext}")) for name in FIGURES for ext in ("png", "csv")]
        + retrieval_table_outputs()
        + expand(res(KB_REPORT), task=TASKS)
        + [res(MANIFEST)]
    )


RETRIEVAL_TABLES = {
    "ranks": "retrieval_ranks.parquet",
    "recall_csv": "retrieval.csv",
    "recall_md": "retrieval.md",
    "split_csv": "retrieval_split.csv",
    "split_md": "retrieval_split.md",
}


def retrieval_table_outputs():
    """The retrieval diagnostics (kinject.reporting.retrieval), where RAG runs."""
    return [res(TABLE.format(name=name)) for name in RETRIEVAL_TABLES.values()] if RAG_KS else []


def retrieved_of(name, task="{task}"):
    """A retriever's retrieved file for a task (kinject.evaluation.retrievers.retrieved_file)."""
    return res(retrieved_file(name).format(task=task))


def manifest_inputs():
    """What the manifest records and so re-runs with: the hub metadata, the fetches (and their revisions.json),
    the local files, and every other result: it is the record of the run, rebuilt whenever the run changed any."""
    return {
        "hub": [f"{folder}.json" for folder in HUB if folder in hub_folders_used()],
        "fetched": expand(res(FETCH_COUNTS), task=TASKS),
        "results": [path for path in all_outputs() if path != res(MANIFEST)],  # the record of the run: made last
        "local": [path for path in local_sources(config) if os.path.isfile(path)],
    }


def hub_folders_used():
    """The hub folders some job reads (the embedder only where RAG runs)."""
    return [f for f in HUB if not f.startswith(res(HUB_EMBEDDER_DIR.format(embedder=""))) or RAG_KS]


def questions_input(wildcards):
    """A task's question source's own files (MMLU CSVs, a table: kinject.qa.sources), so that editing one re-runs
    its loader; none for a download."""
    spec = task_cfg(wildcards)["questions"]
    return QUESTION_SOURCES[spec["source"]].files(spec)


def question_group_table(wildcards):
    """The question table of a task that names a group column (questions.group_column: rule question_clusters
    reads its groups); none otherwise."""
    spec = task_cfg(wildcards)["questions"]
    return spec["path"] if spec.get("group_column") else []


def knowledge_base_input(wildcards):
    """The local files a task's knowledge-base source reads (kinject.knowledge.sources): a dump, the files naming
    its pages (titles or hub pages), its index and the file pinning its revisions; a files source's documents,
    a table (a Hugging Face dataset is pinned by its revision instead, a param). Editing, adding or removing one
    re-runs the source's rule."""
    kb = task_cfg(wildcards)["knowledge_base"]
    return KNOWLEDGE_SOURCES[kb["source"]].inputs(kb)


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


def question_rule_tasks(rule_name):
    """A wildcard constraint: the tasks whose question source (kinject.qa.sources) is made by rule_name."""
    return tasks_regex(lambda t: QUESTION_SOURCES[t["questions"]["source"]].rule == rule_name)


def knowledge_rule_tasks(rule_name):
    """A wildcard constraint: the tasks whose knowledge-base source (kinject.knowledge.sources) is read by
    rule_name."""
    return tasks_regex(lambda t: KNOWLEDGE_SOURCES[t["knowledge_base"]["source"]].rule == rule_name)


GENERATED = question_rule_tasks("generate_questions")
TABLE_QUESTIONS = question_rule_tasks("load_table_questions")
MMLU_QUESTIONS = question_rule_tasks("load_mmlu_questions")
HUB_QUESTIONS = tasks_regex(lambda t: QUESTION_SOURCES[t["questions"]["source"]].hub)
# knowledge bases from MediaWiki pages (fetch, clean_dump) or from the user's own documents (load_corpus)
WIKI = knowledge_rule_tasks("fetch")
CORPUS = knowledge_rule_tasks("load_corpus")


def generated_paraphrases_input(wildcards):
    if int(wildcards.k) == 0:
        return []
    return res(GENERATED_PARAPHRASES.format(task=wildcards.task))


def search_lrs(method="full"):
    """The learning rates of a fine-tuning method's search (wildcard lr)."""
    return [f"{lr:g}" for lr in method_lrs(config, method)]


def hparams_input(method="full"):
    """The search's chosen.json (for method's runs), where the task has a search."""

    def chosen(wildcards):
        if "validation" in task_cfg(wildcards):
            return res(METHODS[method].chosen.format(model=wildcards.model, task=wildcards.task))
        return []

    return chosen


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
        "retrieved": res(RETRIEVED.format(task=wildcards.task)),
        "chunks": res(CHUNKS.format(task=wildcards.task)),
    }


def loss_files():
    """Every fine-tuning run's loss: beside its checkpoint or adapter (kinject.training.methods)."""
    return [
        res(METHODS[c["method"]].loss.format(model=c["model"], task=c["task"], k=c["p"]))
        for c in finetuned_checkpoints(config)
    ]


def control_spec(wildcards):
    return config["evaluation"]["controls"][wildcards.control]


def control_input(wildcards):
    """A control's own files (MMLU CSVs, a table), so that editing one re-loads it; an MMLU control's download."""
    spec = control_spec(wildcards)
    folder = res(HUB_CONTROL_DIR.format(control=wildcards.control))
    return ([folder] if folder in HUB else []) + QUESTION_SOURCES[spec["source"]].files(spec)


def control_outputs(method, suffix="json"):
    """The control score files (or their records) of one evaluation job: every control on one checkpoint."""
    pattern = CONTROL_SCORE.replace("{method}", "base") if method == "base" else METHODS[method].control_score
    pattern = pattern.replace("{model}", "{{model}}").replace("{task}", "{{task}}").replace("{p}", "{{p}}")
    return expand(res(pattern.removesuffix(".json") + f".{suffix}"), control=CONTROLS)


# A fine-tuning method's rules (rules/finetune.smk, evaluate.smk, controls.smk make them in a loop over
# kinject.training.methods.METHODS): what differs between methods comes from its registry entry.
def training_settings(rule_name, method):
    """A training rule's settings param (kinject.training.launch.rule_settings): finetune's depend on the task, and
    an extra training seed's run (k: 10_s7, kinject.training.seeds) trains with that seed."""
    if rule_name == "finetune":
        return lambda wc: canonical(seeded_settings(rule_settings(config, rule_name, task_cfg(wc), method=method.name),
                                                    wc.k))
    return lambda wc: canonical(rule_settings(config, rule_name, method=method.name))


def seeded_settings(settings, k):
    """A run's settings under the seed its k carries (kinject.training.seeds.untag); the run's seed's as they are."""
    seed = training_seeds.untag(k)[1]
    return settings if seed is None else {**settings, "seed": seed}


def paraphrase_set_input(pattern):
    """A training input whose {k} is the paraphrase set: an extra seed's run (k: 10_s7) reads set 10's; a {model} in
    it is the run's (synthetic CPT's sets are the model's own)."""
    return lambda wc: res(pattern.format(task=wc.task, model=wc.model, k=training_seeds.untag(wc.k)[0]))


def work_dir_of(path):
    """A job's scratch folder (kinject.paths.work_dir) for an artifact path, its wildcards filled in."""
    return lambda wc: res(work_dir(path).format(**dict(wc.items())))


def trials(method, file="lr{lr}.json"):
    """Every trial of a method's search for a (model, task): its JSON, or with file="lr{lr}" its model."""
    return lambda wc: expand(res(method.hparams(file)), model=wc.model, task=wc.task, lr=search_lrs(method.name))


def checkpoint_input(method):
    """What an evaluation of paraphrase set {p}'s fine-tuned model reads: the checkpoint, or an adapter and the
    base model it is applied over."""
    saved = res(method.checkpoint.replace("{k}", "{p}"))
    return {"model": saved} if method.whole_model else {"model": base_model_input, "adapter": saved}


def checkpoint_params(method):
    """The model (and adapter) such an evaluation loads."""
    if method.whole_model:
        return {"model": lambda wildcards, input: input.model}
    return {"model": base_model_path, "adapter": lambda wildcards, input: input.adapter}
