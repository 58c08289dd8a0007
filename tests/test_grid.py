"""The full paper grid: the dry run has the jobs counted by hand, the planner's DAG is the dry run's, and bad
configs fail with one line."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kinject.errors import KinjectError
from kinject.grid import cells, dry_run_jobs, evaluation_cells, evaluation_jobs
from kinject.paths import SCORE_PATTERN, rooted
from kinject.planning.dag import dag_jobs, job_counts
from kinject.settings import load_config

ROOT = Path(__file__).resolve().parents[1]


def dry_run_counts(*args) -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dry_run_jobs(proc.stdout)


# The paper's jobs (config.yaml) counted by hand, as docs/plan.md's table derives them: M = 3 models, 6 tasks
# (5 MMLU tasks with shots {0, 5}, paraphrase set {0}, FT+RAG set {0}; current events with sets 0..10, FT+RAG
# sets {0, 10}), every task searched (validation) over L = 5 learning rates, K = 0 and 5 RAG depths, F = 2
# formats (options, letters), 3 controls (MMLU subjects), hub ids: 3 models, the embedder, 5 MMLU datasets; the
# steps-matched control of set 10 (finetune.steps_matched [10]: current events only, the one task with set 10).
PAPER_JOBS = {
    "fetch": 6, "clean_dump": 6, "make_chunks": 6, "knowledge_base_report": 6,  # every task is a dump
    "load_mmlu_questions": 5,
    "generate_questions": 1, "select_questions": 1, "review_questions": 1, "paraphrase_chunks": 1,  # current events
    "paraphrase_set": 5 * 1 + 11, "validation_paraphrases": 6,
    "download_model": 3, "download_embedder": 1, "download_dataset": 5, "download_control_dataset": 3,
    "hparam_trial": 3 * 6 * 5, "choose_hparams": 3 * 6,
    "validated_model": 3 * 6,  # set 0 of every searched task is the chosen trial's model
    "finetune": 3 * (5 * 1 + 11) - 3 * 6,  # so not a finetune job
    "finetune_steps": 3 * 1,  # per model: current events' set 10 (no search of its own, no set 0)
    "index_chunks": 6, "retrieve": 6,
    "lmeval_task": 2 * 6 * 6,  # per task and format, K = 0 and the 5 RAG depths
    # one evaluation job per checkpoint, shot count and format: base (+ RAG), FT, FT (+ RAG) for its FT+RAG sets
    "evaluate_base": 2 * 3 * (5 * 2 + 1),
    "evaluate_ft": 2 * 3 * (5 * 2 * 1 + 11),
    "evaluate_ftrag": 2 * 3 * (5 * 2 * 1 + 2),
    "evaluate_steps": 2 * 3 * 1,  # formats x models x current events' FT-steps10 (no FT+RAG, no controls)
    "control_questions": 3, "control_lmeval_task": 3,
    "evaluate_controls_base": 3, "evaluate_controls_ft": 3 * (5 * 1 + 11),  # every base model and checkpoint
    "question_clusters": 6,  # each task's question clusters, read by the tables
    "forgetting": 1, "tables": 1, "retrieval_tables": 1, "figures": 1, "manifest": 1, "all": 1,
}


def test_paper_grid_dry_run_matches_hand_count():
    config = load_config(ROOT / "config.yaml")
    counts = dry_run_counts()
    assert counts == PAPER_JOBS
    assert sum(counts.values()) == 639 + 3 + 6 + 1  # + retrieval_tables
    # the paper's grid: 3 models x 2 scoring formats (options, letters)
    #   x (5 MMLU tasks x 2 shots x (base + 5 RAG + FT + 5 FT+RAG)
    #      + current events x (base + 5 RAG + 11 FT + 2 x 5 FT+RAG + FT-steps10))
    assert len(cells(config)) == 3 * 2 * (5 * 2 * 12 + 28)


def test_paper_dry_run_shows_the_question_target_and_the_review_requirement():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "results/paper/current_events/questions.parquet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("review_questions current_events: the human review questions.review=resources/current_events_review.csv "
            "(required to exist unless skip; only accepted questions enter unless questions.keep_unreviewed=False), "
            "then questions.target=910 questions sampled") in proc.stdout


# The demo's jobs counted by hand from config/demo.yaml and rules/*.smk, not from kinject.grid (which the rules
# themselves call, so comparing the dry run with it alone cannot catch a grid function that is wrong in both).
# One model (SmolLM2, from a GGUF wheel: convert_gguf, no download), no search (no task has validation), one
# method (full); atlas: dump, MMLU CSV, shots 0 and 5, options, set 0; current_events: dump, generated, shot 0,
# options, sets 0 and 4, FT+RAG sets 0 and 4; K = 0, 1, 2 (RAG K = 1, 2); no controls; the steps-matched
# control of set 4 (finetune.steps_matched [4]: current events).
DEMO_JOBS = {
    "fetch": 2, "clean_dump": 2, "make_chunks": 2, "knowledge_base_report": 2,  # both tasks are dumps
    "load_mmlu_questions": 1,  # atlas
    "generate_questions": 1, "select_questions": 1, "review_questions": 1,  # current_events
    "paraphrase_chunks": 1,  # only current_events has a set > 0; set 0 is the chunks themselves
    "paraphrase_set": 1 + 2,  # atlas {0}, current_events {0, 4}
    "convert_gguf": 1,
    "finetune": 1 + 2,  # one per (task, set): no search, so set 0 is trained too
    "finetune_steps": 1,  # current_events' set 4
    "extract_embedder": 1, "index_chunks": 2, "retrieve": 2,
    "lmeval_task": 2 * 3 * 1,  # per (task, K, format), shots share the folder: 2 tasks x K {0, 1, 2} x options
    # one evaluation job per checkpoint x task x shots x format
    "evaluate_base": 1 * 1 + 1 * 1,  # atlas 1 shot {0} x 1 format, current_events 1 x 1
    "evaluate_ft": 1 * 1 * 1 + 1 * 1 * 2,  # atlas 1 shot x 1 format x set {0}, current_events 1 x 1 x sets {0, 4}
    "evaluate_ftrag": 1 * 1 * 1 + 1 * 1 * 1,  # FT+RAG sets: atlas {0} (the default, its largest), current_events {4}
    "evaluate_steps": 1 * 1 * 1,  # current_events 1 shot x 1 format x FT-steps4
    "question_clusters": 2,  # one per task
    "tables": 1, "retrieval_tables": 1, "figures": 1, "manifest": 1, "all": 1,
}

# The extended demo (config/demo.yaml, then config/demo_extended.yaml over it: dicts merge, lists replace).
# atlas: + 5-shot, + letters, + validation (search lr 1e-4, 3e-4); current_events: methods full, lora and qa_sft, sets
# 0, 2, 10, FT+RAG sets 0 and 10, + validation (full: 2 rates, LoRA: 3e-4, 1e-3, 3e-3, QA-SFT: 1e-4, 3e-4); QA-SFT
# trains set 0 only (its QA pairs), so its cells are QA-SFT and QA-SFT+RAG; the steps-matched control of set 10
# (current_events; demo.yaml's [4] replaced); handbook: files, JSONL table, shot 0, options, set 0, no search; one
# control (a table). Set 0 of a searched task is the chosen trial's model (validated_model / validated_adapter /
# validated_model_qa_sft / validated_model_pit ...), not a finetune job. Training seeds 1234 (the run's), 1 and 2 for
# current_events' full sets 0 and 10 and the control of set 10: each extra seed (2) trains those 3 models again
# (set 0 too, at the search's choice: finetune, not adopted), scored as FT and, for sets 0 and 10, FT+RAG; no control
# scores. PIT and its mixed variant (current_events, 1e-4 and 3e-4 each) train every set of current_events on the QA
# pairs and its texts, each a file (pit_train).
EXTENDED_JOBS = {
    "fetch": 2, "clean_dump": 2, "load_corpus": 1,  # atlas, current_events are dumps; handbook a folder of files
    "make_chunks": 3, "knowledge_base_report": 3,
    "load_mmlu_questions": 1, "load_table_questions": 1,  # atlas, handbook
    "generate_questions": 1, "select_questions": 1, "review_questions": 1,  # current_events
    "paraphrase_chunks": 1,  # current_events, the one task with a set > 0
    "paraphrase_set": 1 + 3 + 1,  # atlas {0}, current_events {0, 2, 10} (full and LoRA share them), handbook {0}
    "validation_paraphrases": 2,  # atlas, current_events
    "convert_gguf": 1,
    "hparam_trial": 2 * 2, "choose_hparams": 2, "validated_model": 2,  # 2 searched tasks x 2 rates
    "hparam_trial_lora": 1 * 3, "choose_hparams_lora": 1, "validated_adapter": 1,  # current_events x 3 rates
    # QA-SFT on current_events: its pairs (1), its search (2 rates), set 0 adopted; no finetune_qa_sft (set 0 only)
    "qa_sft_pairs": 1, "hparam_trial_qa_sft": 1 * 2, "choose_hparams_qa_sft": 1, "validated_model_qa_sft": 1,
    # PIT and PIT-mix on current_events: a data file per set (both read it), a search each, set 0 adopted, sets 2, 10
    "pit_train": 3, "hparam_trial_pit": 1 * 2, "choose_hparams_pit": 1, "validated_model_pit": 1, "finetune_pit": 2,
    "hparam_trial_pit_mixed": 1 * 2, "choose_hparams_pit_mixed": 1, "validated_model_pit_mixed": 1,
    "finetune_pit_mixed": 2,
    "finetune": (1 - 1) + (3 - 1) + 1 + 2 * 2,  # atlas, current_events without their set 0; handbook's set 0; seeds
    "finetune_lora": 3 - 1,  # current_events sets 2 and 10
    "finetune_steps": 1 + 2,  # current_events' set 10, at full's chosen learning rate and epochs; 2 extra seeds
    "extract_embedder": 1, "index_chunks": 3, "retrieve": 3,
    "lmeval_task": 3 * 2 + 3 * 1 + 3 * 1,  # K {0, 1, 2} x formats: atlas 2, current_events 1, handbook 1
    "evaluate_base": 2 * 2 + 1 + 1,  # atlas 2 shots x 2 formats; current_events, handbook 1 x 1
    "evaluate_ft": 2 * 2 * 1 + 1 * 3 + 1 * 1 + 2 * 2,  # x sets: atlas {0}, current_events {0, 2, 10}, handbook {0}
    "evaluate_ftrag": 2 * 2 * 1 + 1 * 2 + 1 * 1 + 2 * 2,  # x FT+RAG sets: atlas {0}, current_events {0, 10}, handbook {0}
    "evaluate_lora": 1 * 3, "evaluate_lorarag": 1 * 2,  # current_events only: sets {0, 2, 10}, FT+RAG {0, 10}
    "evaluate_qasft": 1, "evaluate_qasftrag": 1,  # current_events only: set {0}, QA-SFT+RAG {0}
    "evaluate_steps": 1 + 2,  # current_events' FT-steps10 per seed (not scored on the control: no forgetting row)
    "evaluate_pit": 3, "evaluate_pitrag": 2, "evaluate_pitmix": 3, "evaluate_pitmixrag": 2,  # as LoRA's
    "control_questions": 1, "control_lmeval_task": 1,
    "evaluate_controls_base": 1,
    "evaluate_controls_ft": 1 + 3 + 1,  # every full checkpoint: atlas 1, current_events 3, handbook 1
    "evaluate_controls_lora": 3,  # every LoRA checkpoint: current_events 3
    "evaluate_controls_qasft": 1,  # the QA-SFT checkpoint: current_events 1
    "evaluate_controls_pit": 3, "evaluate_controls_pitmix": 3,  # every PIT checkpoint: current_events 3 each
    "question_clusters": 3,  # one per task
    # retrieval.retrievers [dense, bm25, hybrid, oracle]: bm25's index and each one's retrieved file (the oracle's
    # on current_events only, the one task whose questions name their source chunk); each one's lm-eval tasks
    # (K {1, 2}; the oracle's K 1) and evaluation jobs as dense's RAG and FT+RAG ones
    "index_chunks_bm25": 3, "retrieve_bm25": 3, "retrieve_hybrid": 3, "retrieve_oracle": 1,
    "lmeval_task_bm25": 2 * 2 + 2 * 1 + 2 * 1, "lmeval_task_hybrid": 2 * 2 + 2 * 1 + 2 * 1, "lmeval_task_oracle": 1,
    "evaluate_rag_bm25": 6, "evaluate_rag_hybrid": 6, "evaluate_rag_oracle": 1,  # as evaluate_base; oracle: current_events
    "evaluate_ftrag_bm25": 7, "evaluate_ftrag_hybrid": 7, "evaluate_ftrag_oracle": 2,  # as evaluate_ftrag; oracle: {0, 10}
    "evaluate_lorarag_bm25": 2, "evaluate_lorarag_hybrid": 2, "evaluate_lorarag_oracle": 2,
    "evaluate_qasftrag_bm25": 1, "evaluate_qasftrag_hybrid": 1, "evaluate_qasftrag_oracle": 1,
    "evaluate_pitrag_bm25": 2, "evaluate_pitrag_hybrid": 2, "evaluate_pitrag_oracle": 2,  # as evaluate_pitrag
    "evaluate_pitmixrag_bm25": 2, "evaluate_pitmixrag_hybrid": 2, "evaluate_pitmixrag_oracle": 2,
    # synthetic CPT on current_events (synthetic.tokens [4000, 16000]): its entities and texts (2 LLM jobs), a data file
    # per budget, its search (2 rates) on 4000 adopted as that budget's model, 16000 trained; each budget scored, the
    # largest's +RAG with each retriever (dense, bm25, hybrid, oracle), each checkpoint on the control
    "synthetic_entities": 1, "synthetic_texts": 1, "synthetic_set": 2, "hparam_trial_synthetic": 2,
    "choose_hparams_synthetic": 1, "validated_model_synthetic": 1, "finetune_synthetic": 1,
    "evaluate_syn": 2, "evaluate_synrag": 1, "evaluate_synrag_bm25": 1, "evaluate_synrag_hybrid": 1,
    "evaluate_synrag_oracle": 1, "evaluate_controls_syn": 2,
    "forgetting": 1, "tables": 1, "retrieval_tables": 1, "figures": 1, "manifest": 1, "all": 1,
}


# The test suite's tiny demo (conftest.tiny_demo: .test/config/tiny_llama.yaml over config/demo.yaml, `models`
# replaced whole), what demo_run runs. One model, built and pre-trained by the pipeline (build_base_model, no
# GGUF); both tasks searched (validation: lr 3e-4 and 1e-3), so set 0 of each is the chosen trial's model; atlas:
# shots 0 and 5, formats options and letters, set 0; current_events: shot 0, options, sets 0, 1, 10, FT+RAG sets
# 0 and 10; K = 0..3 (RAG K = 1..3); no controls, full fine-tuning only, and its steps-matched control of set 1
# (finetune.steps_matched [1]: the cheapest, the code path).
TINY_DEMO_JOBS = {
    "fetch": 2, "clean_dump": 2, "make_chunks": 2, "knowledge_base_report": 2,  # both tasks are dumps
    "load_mmlu_questions": 1,  # atlas
    "generate_questions": 1, "select_questions": 1, "review_questions": 1,  # current_events
    "paraphrase_chunks": 1,  # current_events, the one task with a set > 0
    "paraphrase_set": 1 + 3,  # atlas {0}, current_events {0, 1, 10}
    "validation_paraphrases": 2,  # both tasks are searched
    "build_base_model": 1,
    "hparam_trial": 2 * 2, "choose_hparams": 2, "validated_model": 2,  # 2 searched tasks x 2 rates
    "finetune": (1 - 1) + (3 - 1),  # without each task's set 0: current_events sets 1 and 10
    "finetune_steps": 1,  # current_events' set 1, at the chosen trial's learning rate and epochs
    "extract_embedder": 1, "index_chunks": 2, "retrieve": 2,
    "lmeval_task": 4 * 2 + 4 * 1,  # K {0, 1, 2, 3} x formats: atlas 2, current_events 1
    "evaluate_base": 2 * 2 + 1 * 1,  # atlas 2 shots x 2 formats, current_events 1 x 1
    "evaluate_ft": 2 * 2 * 1 + 1 * 1 * 3,  # x sets: atlas {0}, current_events {0, 1, 10}
    "evaluate_ftrag": 2 * 2 * 1 + 1 * 1 * 2,  # x FT+RAG sets: atlas {0} (its largest), current_events {0, 10}
    "evaluate_steps": 1 * 1 * 1,  # current_events 1 shot x 1 format x FT-steps1
    "question_clusters": 2,  # one per task
    "tables": 1, "retrieval_tables": 1, "figures": 1, "manifest": 1, "all": 1,
}


def test_demo_grid_dry_run_matches_hand_count():
    counts = dry_run_counts("all", "--configfile", "config/demo.yaml")
    assert counts == DEMO_JOBS
    assert sum(counts.values()) == 44 + 2 + 1  # + retrieval_tables


def test_tiny_demo_grid_dry_run_matches_hand_count(tmp_path):
    """The suite's own grid (demo_run's), counted by hand: a change to .test/config/tiny_llama.yaml shows here."""
    from conftest import tiny_demo

    path = tmp_path / "tiny_demo.yaml"
    path.write_text(yaml.safe_dump(tiny_demo(ROOT), sort_keys=False))
    counts = dry_run_counts("all", "--configfile", str(path))
    assert counts == TINY_DEMO_JOBS
    assert sum(counts.values()) == 71 + 2 + 1  # + retrieval_tables


def test_extended_demo_grid_dry_run_matches_hand_count():
    """LoRA's rules, a files-and-table task, the controls and the forgetting table, counted by hand."""
    files = ["config/demo.yaml", "config/demo_extended.yaml"]
    counts = dry_run_counts("all", "--configfile", *files)
    assert counts == EXTENDED_JOBS
    # 104 + 3 question_clusters + QA-SFT's 1 + 2 + 1 + 1 training and 1 + 1 + 1 evaluation jobs + the steps-matched
    # control's finetune_steps and evaluate_steps + the extra seeds' 6 trainings and 10 evaluations + PIT's and
    # PIT-mix's 3 + 2 x (2 + 1 + 1 + 2) data and training and 2 x (3 + 2 + 3) scoring jobs + the other retrievers'
    # 65 jobs and retrieval_tables + their PIT+RAG and PIT-mix+RAG cells (2 x 3 retrievers x 2 sets) + synthetic
    # CPT's 2 LLM, 2 data, 2 + 1 + 1 + 1 training and 2 + 4 + 2 scoring jobs
    assert sum(counts.values()) == 104 + 3 + 8 + 2 + 16 + 31 + 66 + 12 + 17


def test_the_planners_dag_is_the_dry_runs():
    """kinject.planning.dag (what kinject plan and kinject jobs read) has the jobs `snakemake -n --forceall all`
    lists, from a loaded config, wherever it is called from; the rules in the order the rule files define them."""
    config = load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")
    jobs = dag_jobs(config, ROOT / "tests")  # no Snakefile there: the checkout's
    assert job_counts(jobs) == EXTENDED_JOBS
    assert list(job_counts(jobs))[:2] == ["fetch", "clean_dump"] and list(job_counts(jobs))[-1] == "all"
    trials = [j["wildcards"] for j in jobs if j["rule"] == "hparam_trial_lora"]
    assert sorted(w["lr"] for w in trials) == ["0.0003", "0.001", "0.003"]
    assert {tuple(sorted(w)) for w in trials} == {("lr", "model", "task")}


@pytest.mark.parametrize("configfiles", [["config.yaml"], ["config/demo.yaml"],
                                         ["config/demo.yaml", "config/demo_extended.yaml"]])
def test_evaluation_jobs_score_every_cell_exactly_once(configfiles):
    """The DAG's evaluation jobs write every cell's score file once; kinject.grid.evaluation_jobs (the benchmarks'
    list) has the DAG's jobs."""
    config = load_config(*(ROOT / f for f in configfiles))
    rules = evaluation_cells(config)
    dag = [j for j in dag_jobs(config) if j["rule"] in rules]
    written = [SCORE_PATTERN.format(**{**j["wildcards"], "method": method.format(**j["wildcards"]), "k": k})
               for j in dag for method, k in rules[j["rule"]]]
    assert sorted(written) == sorted(cell.path for cell in cells(config))
    listed = [(rule, sorted((key, str(value)) for key, value in job.items()))
              for rule, jobs in evaluation_jobs(config).items() for job in jobs]
    assert sorted(listed) == sorted((j["rule"], sorted(j["wildcards"].items())) for j in dag)


def test_no_rag_k_means_no_rag_jobs(tmp_path):
    path = write_config(tmp_path, lambda c: c["retrieval"].update(k=[0]))
    config = load_config(path)
    assert evaluation_cells(config)["evaluate_base"] == [("base", 0)]
    # the demo's jobs without the embedder, the index, retrieval, FT+RAG and the retrieval diagnostics; one lm-eval
    # task per task (K = 0)
    rag = ("extract_embedder", "index_chunks", "retrieve", "evaluate_ftrag", "retrieval_tables")
    expected = {**{rule: n for rule, n in DEMO_JOBS.items() if rule not in rag}, "lmeval_task": 2}
    assert dry_run_counts("--configfile", str(path)) == expected


def write_config(tmp_path, edit):
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(typo_key=1), "Additional properties are not allowed .'typo_key' was unexpected."),
    (lambda c: c["retrieval"].update(k="3"), "'3' is not of type 'array'"),
    (lambda c: c["finetune"].update(lr=-1), "-1 is less than or equal to the minimum of 0"),
    (lambda c: c["tasks"]["current_events"].update(shots=[0, 5]), "tasks.current_events.shots: generated questions have no dev split"),
    (lambda c: c["tasks"]["current_events"].update(paraphrase_sets=[0, 12]), "asks for set 12 but paraphrases.count is 10"),
    (lambda c: c["tasks"]["current_events"].update(paraphrase_sets=[0, 1], ft_rag_paraphrase_sets=[3]), r"ft_rag_paraphrase_sets \[3\] are not in paraphrase_sets"),
    (lambda c: c["finetune"].update(batch_size=10, per_device_batch_size=4), "batch_size must be a multiple"),
    (lambda c: c["tasks"]["current_events"]["questions"].pop("review"), "questions.review is required for generated"),
    (lambda c: c["tasks"]["atlas"]["knowledge_base"].update(titles="t.txt", hub_pages_file="h.yaml"),
     "knowledge_base: set titles or hub_pages_file, not both"),
    (lambda c: c["tasks"]["atlas"]["knowledge_base"].update(events={"start": "2023-08-01", "end": "2023-11-30"}),
     r"knowledge_base.events needs hub_pages_file"),
    (lambda c: c["tasks"]["atlas"]["knowledge_base"].update(
        hub_pages_file="h.yaml", events={"start": "2023-12-01", "end": "2023-11-30"}), "events.start is after events.end"),
    (lambda c: c["tasks"]["atlas"].update(knowledge_base={"source": "mediawiki", "hub_pages_file": "h.yaml"}),
     "mediawiki.user_agent is required"),
    (lambda c: c["tasks"]["atlas"]["knowledge_base"].update(as_of="2023-12-01"), "'2023-12-01' does not match"),
    (lambda c: (c["tasks"]["atlas"].update(knowledge_base={"source": "mediawiki", "hub_pages_file": "h.yaml",
                                                           "revisions_file": "kb.json"}),
                c.update(mediawiki={"user_agent": "me"})),
     "knowledge_base.revisions_file needs tasks.atlas.knowledge_base.as_of"),
    # a source no entry registers (kinject.knowledge.sources, kinject.qa.sources): the key, the value, the names
    (lambda c: c["tasks"]["atlas"]["knowledge_base"].update(source="wiki"),
     r"tasks.atlas.knowledge_base.source: 'wiki' is not a knowledge-base source \(registered: dump, mediawiki, "
     r"files, table\)$"),
    (lambda c: c["tasks"]["atlas"]["questions"].update(source="mmlu-csv"),
     r"tasks.atlas.questions.source: 'mmlu-csv' is not a question source \(registered: mmlu, mmlu_csv, "
     r"generated, table\)$"),
    (lambda c: c["evaluation"].update(controls={"more": {"source": "generated"}}),
     r"evaluation.controls.more.source: 'generated' is not a question source for a control \(registered: mmlu, "
     r"mmlu_csv, table\)$"),
    (lambda c: c["retrieval"].update(retrievers=["dense", "splade"]),
     r"retrieval.retrievers: 'splade' is not a retriever \(registered: dense, bm25, hybrid, rerank, oracle\)$"),
    (lambda c: c["retrieval"].update(retrievers=["dense", "dense"]), r"retrieval.retrievers: dense is listed twice$"),
    (lambda c: c["retrieval"].update(retrievers=["bm25"]),
     r"retrieval.retrievers: \['bm25'\] lacks dense, the paper's retriever; the others are measured beside it$"),
    (lambda c: c["retrieval"].update(retrievers=["dense", "hybrid"]),
     r"retrieval.retrievers: hybrid fuses dense and bm25; list bm25 too$"),
    # the steps-matched control (kinject.training.matched): a set > 0 that some task fine-tuned with full has
    (lambda c: c["finetune"].update(steps_matched=[0, 4]),
     r"finetune.steps_matched: set 0 is the original chunks, FT itself; list paraphrase sets > 0$"),
    (lambda c: c["finetune"].update(steps_matched=[7]),
     r"finetune.steps_matched: set 7 is in no paraphrase_sets of a task fine-tuned with full \(atlas, "
     r"current_events\)$"),
    (lambda c: c["finetune"].update(methods=["full", "steps"]),
     r"finetune.methods: 'steps' is a control of full, not a method of its own: list the paraphrase sets it "
     r"matches in finetune.steps_matched$"),
])
def test_bad_config_is_one_clear_line(tmp_path, edit, message):
    path = write_config(tmp_path, edit)
    with pytest.raises(KinjectError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_resources_evaluate_and_finetune_override_gpu_rules(tmp_path):
    def edit(config):
        config["resources"]["evaluate"] = {"gpu": 0, "mem_mb": 1234, "runtime": 7}
        config["resources"]["finetune"] = {"gpu": 0, "mem_mb": 4321, "runtime": 9}

    path = write_config(tmp_path, edit)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--configfile", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mem = {}
    for job in re.split(r"^\[.*\]$", proc.stdout, flags=re.M):  # a job per block, its date first
        rule, resources = re.search(r"^(?:local)?rule (\w+):", job, re.M), re.search(r"mem_mb=(\d+)", job)
        if rule and resources:
            mem.setdefault(rule[1], set()).add(resources[1])
    assert mem["evaluate_base"] == mem["evaluate_ft"] == mem["evaluate_ftrag"] == {"1234"}
    assert mem["finetune"] == {"4321"} and mem["retrieve"] == {"4000"}  # gpu_rules, as in the demo config


def test_dry_run_jobs_reads_the_job_stats_table():
    out = ("Building DAG of jobs...\nJob stats:\njob            count\n-----------  -------\nevaluate_ft"
           "        13\nall                1\ntotal             14\n\nReasons:\n    code has changed:\n"
           "        evaluate_ft 1\n")
    assert dry_run_jobs(out) == {"evaluate_ft": 13, "all": 1}
    assert dry_run_jobs("Building DAG of jobs...\nNothing to be done (all requested files are present).") == {}


def test_config_sections_given_as_params_do_not_depend_on_key_order():
    """Snakemake compares a rule's params by repr: the same settings written in another order are equal."""
    from kinject.settings import canonical

    written = {"model": "m", "retry": {"max": 3, "backoff": 2.0}, "stops": [{"b": 1, "a": 2}], "pair": (1, 2)}
    reordered = {"stops": [{"a": 2, "b": 1}], "pair": (1, 2), "retry": {"backoff": 2.0, "max": 3}, "model": "m"}
    assert repr(written) != repr(reordered)
    assert repr(canonical(written)) == repr(canonical(reordered))
    assert canonical(written) == written  # the same settings, only reordered


def readme_handbook() -> tuple[str, list[str]]:
    """The README's "Your own corpus and questions": its YAML block (dedented) and its snakemake command."""
    section = (ROOT / "README.md").read_text().split("## Your own corpus and questions", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    study:"))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    block = "\n".join(line[4:] for line in lines[start:end])
    command = next(line.strip() for line in lines if line.startswith("    snakemake "))
    return block, shlex.split(command)


def test_readme_handbook_config_is_the_shipped_file():
    block, _ = readme_handbook()
    assert yaml.safe_load(block) == yaml.safe_load((ROOT / "config" / "handbook.yaml").read_text())


def test_readme_handbook_command_plans_full_and_lora_fine_tuning():
    """The README's command, as a dry run: it parses (targets before --configfile, which takes several files),
    the merged config validates, and the handbook is fine-tuned in full and with LoRA."""
    _, command = readme_handbook()
    assert command[0] == "snakemake" and "config/handbook.yaml" in command
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", *command[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    planned = set()
    for job in re.split(r"^\[.*\]$", proc.stdout, flags=re.M):  # a job per block, its date first
        rule, task = re.search(r"^(?:local)?rule (\w+):", job, re.M), re.search(r"wildcards: .*task=(\w+)", job)
        if rule and task:
            planned.add((rule[1], task[1]))
    assert {("finetune", "handbook"), ("finetune_lora", "handbook")} <= planned
    assert dry_run_jobs(proc.stdout)["tables"] == 1


def test_rooted_moves_a_path_already_under_the_study_root():
    """Study `handbook` with a task `handbook`: the task's files are results/handbook/handbook/..."""
    assert rooted("results/handbook/chunks.parquet", "results/handbook") == "results/handbook/handbook/chunks.parquet"
    assert rooted("results/tables/x.md", "results/paper") == "results/paper/tables/x.md"
    assert rooted("results/tables/x.md", "results") == "results/tables/x.md"
    assert rooted("resources/demo/atlas.xml", "results/paper") == "resources/demo/atlas.xml"
