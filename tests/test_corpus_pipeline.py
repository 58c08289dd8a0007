"""The user's own corpus, questions and method end to end: a folder of markdown files as the knowledge base,
a JSONL table of questions, LoRA beside full fine-tuning and a control question set for the forgetting table,
through the whole pipeline on the tiny Llama."""

import json
import shutil

import pandas as pd
import pytest
import yaml
from conftest import copy_checkout, run_snakemake, tiny_demo

from kinject.grid import dry_run_jobs

pytestmark = pytest.mark.slow

HANDBOOK = {
    "group": "handbook",
    "knowledge_base": {"source": "files", "path": "resources/demo/handbook"},
    "questions": {"source": "table", "path": "resources/demo/handbook_questions.jsonl"},
    "shots": [0],
    "paraphrase_sets": [0],
}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    workdir = copy_checkout(tmp_path_factory.mktemp("corpus"))
    config = tiny_demo(workdir)
    config["tasks"] = {"handbook": HANDBOOK}
    config["models"]["tiny-llama"]["build"]["pretrain_epochs"] = 1
    config["retrieval"]["k"] = [0, 1]
    # steps_matched: [] (the tiny demo's control matches current events' set 1, not a set of this grid)
    config["finetune"].update(methods=["full", "lora"], lora={"r": 4, "alpha": 8, "lr": 3e-3}, steps_matched=[])
    config["evaluation"]["controls"] = {"general": {"source": "table", "path": "resources/demo/control_questions.jsonl"}}
    (workdir / "config" / "corpus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = run_snakemake(workdir, "all", "--cores", "2", "--configfile", "config/corpus.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, proc.stderr


def test_markdown_folder_and_question_table_run_to_a_result_table(corpus_run):
    workdir, console = corpus_run
    assert "load_corpus[task=handbook] done: 5 of 5 documents with text (source files)" in console
    assert "load_table_questions[task=handbook] done: 24 questions (24 test)" in console
    report = json.loads((workdir / "results/handbook/knowledge_base_report.json").read_text())
    assert report["source"] == "files" and report["pages_in"] == report["pages_kept"] == 5
    assert report["residue"] == {"wiki_markup": 0, "html_entities": 0, "empty_brackets": 0}
    chunks = pd.read_parquet(workdir / "results/handbook/chunks.parquet")
    assert set(chunks["title"]) == {"History of the Quellmoor Ferry Company", "The Fleet", "Routes and Timetable",
                                    "Fares and Tickets", "Safety on Board"}
    assert not chunks["text"].str.contains(r"\*\*|\]\(|^#|source:", regex=True).any()
    table = pd.read_csv(workdir / "results/tables/handbook_0shot.csv")
    assert list(table[["task", "model"]].itertuples(index=False, name=None)) == [("handbook", "tiny-llama")]
    assert table[["Base", "FT", "LoRA", "RAG", "FT+RAG", "LoRA+RAG"]].stack().between(0, 1).all()


def test_lora_is_an_adapter_scored_over_its_base_beside_full_fine_tuning(corpus_run):
    workdir, console = corpus_run
    adapter = workdir / "results/finetune/tiny-llama/handbook/lora/k0/adapter"
    assert {p.name for p in adapter.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    full = workdir / "results/finetune/tiny-llama/handbook/k0/checkpoint/model.safetensors"
    assert (adapter / "adapter_model.safetensors").stat().st_size < full.stat().st_size / 5
    assert "finetune_lora[model=tiny-llama, task=handbook, k=0] done:" in console
    score = json.loads((workdir / "results/scores/tiny-llama/handbook/lora-p0_k0_0shot_options.json").read_text())
    assert score["adapter"] == "results/finetune/tiny-llama/handbook/lora/k0/adapter" and score["method"] == "lora-p0"
    comparisons = pd.read_csv(workdir / "results/tables/comparisons.csv")
    assert {"LoRA vs Base", "LoRA vs FT", "RAG vs LoRA", "LoRA+RAG vs RAG"} <= set(comparisons["contrast"])
    losses = pd.read_csv(workdir / "results/figures/train_loss.csv")
    assert set(losses["method"]) == {"ft", "lora"}


def test_the_control_questions_give_a_forgetting_table_of_every_checkpoint(corpus_run):
    workdir, console = corpus_run
    table = pd.read_csv(workdir / "results/tables/forgetting.csv")
    assert table[["checkpoint", "control", "n"]].values.tolist() == [["handbook FT", "general", 20],
                                                                     ["handbook LoRA", "general", 20]]
    base = json.loads((workdir / "results/controls/scores/tiny-llama/base/general.json").read_text())
    assert table["accuracy_base"].tolist() == pytest.approx([base["accuracy"]] * 2)
    assert table["delta"].tolist() == pytest.approx((table["accuracy_ft"] - table["accuracy_base"]).tolist())
    assert "forgetting done: 2 checkpoint-control pairs" in console


def test_an_edited_document_re_runs_the_corpus_and_what_reads_it(corpus_run, tmp_path):
    workdir, _ = corpus_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    doc = copy / "resources/demo/handbook/04-fares.md"
    doc.write_text(doc.read_text().replace("4 marks 20", "5 marks"))
    proc = run_snakemake(copy, "-n", "all", "--configfile", "config/corpus.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = dry_run_jobs(proc.stdout)
    assert jobs["load_corpus"] == jobs["make_chunks"] == 1
    # the questions are their own file; the tiny Llama's tokenizer is trained on every task's chunks, so its
    # build re-runs with them (a hub or GGUF model would not)
    assert "load_table_questions" not in jobs and jobs["build_base_model"] == 1
