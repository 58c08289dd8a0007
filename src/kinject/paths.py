"""Where every artifact of a study lives: one truth for the rules, the planner, the lock, the manifest and the
reports. Paths are written under results/; ``rooted`` moves them under a study's own results root."""

from __future__ import annotations

from kinject.errors import KinjectError

RESULTS = "results"  # every artifact's path below is under results/: rooted() moves it to a study's own root


def results_root(config: dict) -> str:
    """Where a config's artifacts live: results/<study> (config `study`), or results/ itself when unset (the
    demo). Two studies never read or overwrite each other's files."""
    return f"{RESULTS}/{config['study']}" if config.get("study") else RESULTS


def rooted(path: str, root: str) -> str:
    """An artifact path of this module (results/...) under the results root `root` (results_root). Always
    moved, even when it already starts with `root`: with study `handbook` and task `handbook`, the task's
    results/handbook/chunks.parquet is results/handbook/handbook/chunks.parquet."""
    if root == RESULTS or not str(path).startswith(RESULTS + "/"):
        return str(path)
    return root + str(path)[len(RESULTS):]


# a task's artifacts, stage by stage (rules/*.smk, the planner's corpus measurement)
PAGES = "results/{task}/raw/pages.xml"  # fetch: the knowledge base's pages (a MediaWiki XML stream)
FETCH_COUNTS = "results/{task}/raw/fetch_counts.json"
ARTICLES = "results/{task}/clean/articles.jsonl"  # clean_dump or load_corpus: one document per line
CLEAN_COUNTS = "results/{task}/clean/clean_counts.json"
CHUNKS = "results/{task}/chunks.parquet"
KB_REPORT = "results/{task}/knowledge_base_report.json"
QUESTIONS = "results/{task}/questions.parquet"  # the test set (and an MMLU task's dev split)
CANDIDATES = "results/{task}/questions/candidates.parquet"  # generate_questions: every candidate
SELECTED = "results/{task}/questions/selected.parquet"
GENERATED_PARAPHRASES = "results/{task}/paraphrases/generated.parquet"
PARAPHRASE_SET = "results/{task}/paraphrases/paraphrases_k{k}.parquet"  # set k: the chunks and k paraphrases each
VALIDATION_PARAPHRASES = "results/{task}/validation/paraphrases.parquet"
QA_SFT_TRAIN = "results/{task}/qa_sft/train.parquet"  # QA-SFT's training pairs, after the leakage check
QA_SFT_COUNTS = "results/{task}/qa_sft/counts.json"  # pairs in, removed by text, removed by embedding, kept
QA_SFT_EXTRA = "results/{task}/qa_sft/extra.parquet"  # finetune.qa_sft.qa_per_chunk more candidates per chunk
QA_SFT_CANDIDATES = "results/{task}/qa_sft/candidates.parquet"  # the candidates and those extra ones
PIT_TRAIN = "results/{task}/pit/train_k{k}.parquet"  # PIT's data of set k: QA-SFT's pairs, then set k's texts
SYNTHETIC_ENTITIES = "results/{task}/synthetic/entities.parquet"  # synthetic CPT: each chunk's entities (EntiGraph)
SYNTHETIC_TEXTS = "results/{task}/synthetic/texts.parquet"  # the LLM's texts on pairs and triples of them
# synthetic CPT's data of budget k: the chunks and k tokens (the model's tokenizer) of those texts
SYNTHETIC_SET = "results/{task}/synthetic/train_{model}_k{k}.parquet"
INDEX = "results/{task}/index/{file}"  # a retriever's index ({file}: kinject.evaluation.retrievers)
RETRIEVED = "results/{task}/retrieval/retrieved.parquet"  # the top-K chunks of every question (dense, the RAG cells')
RETRIEVED_BY = "results/{task}/retrieval/{retriever}/retrieved.parquet"  # another retriever's (bm25, hybrid)
BASE_MODEL = "results/models/{model}/base"  # a model built, converted from GGUF, or downloaded
EMBEDDER_PACKAGE = "results/embedder"  # embedder.package extracted
CONTROL_QUESTIONS = "results/controls/{control}/questions.parquet"
CONTROL_LMEVAL = "results/controls/{control}/lmeval"
TABLE = "results/tables/{name}"  # the report's tables (rule tables; rule forgetting's forgetting.csv/.md)
FIGURE = "results/figures/{name}"  # the report's figures, each PNG with the CSV behind it (rule figures)
SCORES_TABLE = TABLE.format(name="scores.csv")  # every score, one row per cell
SCORE_PATTERN = "results/scores/{model}/{task}/{method}_k{k}_{shots}shot_{format}.json"
# beside each score file, its per-question records (kinject.evaluation.evaluate.question_records), one row per question
RECORDS_PATTERN = "results/scores/{model}/{task}/{method}_k{k}_{shots}shot_{format}.parquet"
# each question's cluster (its source: kinject.reporting.clusters), which the tables read beside the records
QUESTION_CLUSTERS = "results/{task}/question_clusters.parquet"
LMEVAL_TASK_DIR = "results/{task}/lmeval/{format}/k{k}"
LMEVAL_TASK_BY = "results/{task}/lmeval/{format}/{retriever}/k{k}"  # another retriever's (bm25, hybrid, oracle)
# hub artifacts, each with <folder>.json beside it (repo, revision asked, commit resolved, file sha256s)
HUB_MODEL_DIR = "results/hub/models/{model}"
HUB_EMBEDDER_DIR = "results/hub/embedder/{embedder}"
HUB_RERANKER_DIR = "results/hub/reranker/{reranker}"  # retrieval.rerank.model's cross-encoder ('/' as '--')
HUB_DATASET_DIR = "results/hub/datasets/{task}"
HUB_CONTROL_DIR = "results/hub/datasets/controls/{control}"  # an MMLU control (evaluation.controls)
# a fine-tuning method's runs and searches (kinject.training.methods: {folder} is the method's sub-folder);
# a run's folder holds its checkpoint (or adapter) and train_loss.csv
FINETUNE_RUN = "results/finetune/{model}/{task}/{folder}k{k}"
HPARAMS_FILE = "results/hparams/{model}/{task}/{folder}{file}"  # a search's trials (lr{lr}.json, lr{lr}/) and chosen.json
# evaluation.controls (forgetting): each control scored on a base model ({method}: base) or a fine-tuned
# checkpoint ({method}: {task}/{cell}, the cell's method name)
CONTROL_SCORE = "results/controls/scores/{model}/{method}/{control}.json"
MANIFEST = "results/manifest.json"  # every source of the run: kinject.provenance.manifest
REVISIONS = "results/{task}/raw/revisions.json"  # the pages fetched as of knowledge_base.as_of (fetch writes it)


def records_path(score_path):
    """The per-question records beside a score file (RECORDS_PATTERN beside SCORE_PATTERN)."""
    path = str(score_path)
    if not path.endswith(".json"):
        raise KinjectError(path, "not a score file (.json)")
    return path[: -len(".json")] + ".parquet"


def clusters_path(score_path) -> str:
    """The question clusters of a score file's task (QUESTION_CLUSTERS under the score file's results root:
    <root>/scores/{model}/{task}/<cell>.json -> <root>/{task}/question_clusters.parquet)."""
    parts = str(score_path).replace("\\", "/").split("/")
    if len(parts) < 4 or parts[-4] != "scores":
        raise KinjectError(score_path, "not a score file path (scores/{model}/{task}/<cell>.json)")
    return "/".join(parts[:-4] + [parts[-2], "question_clusters.parquet"])


def work_dir(path: str) -> str:
    """A job's scratch folder for an artifact path (results/... -> results/.work/...): Trainer checkpoints to
    resume from; kept out of the artifacts' own folders."""
    return path.replace(f"{RESULTS}/", f"{RESULTS}/.work/", 1)
