"""The full paper grid: the dry run is the documented formula, and bad configs fail with one line."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kinject.errors import KinjectError
from kinject.grid import (SCORE_PATTERN, cells, dry_run_jobs, evaluation_cells, evaluation_jobs,
                          expected_job_counts, rooted)
from kinject.settings import load_config

ROOT = Path(__file__).resolve().parents[1]


def dry_run_counts(*args) -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dry_run_jobs(proc.stdout)


def test_paper_grid_dry_run_matches_formula():
    config = load_config(ROOT / "config.yaml")
    expected = expected_job_counts(config)
    assert dry_run_counts() == expected
    # the paper's grid: 3 models x 2 scoring formats (options, letters)
    #   x (5 MMLU tasks x 2 shots x (base + 5 RAG + FT + 5 FT+RAG) + current events x (base + 5 RAG + 11 FT + 2 x 5 FT+RAG))
    assert len(cells(config)) == 3 * 2 * (5 * 2 * 12 + 27)
    # one evaluation job per checkpoint, shot count and format: base (+ RAG), FT, FT (+ RAG) for the sets that have it
    assert expected["evaluate_base"] == 3 * 2 * (5 * 2 + 1)
    assert expected["evaluate_ft"] == 3 * 2 * (5 * 2 * 1 + 11)
    assert expected["evaluate_ftrag"] == 3 * 2 * (5 * 2 * 1 + 2)
    assert expected["lmeval_task"] == 6 * 2 * 6  # per task and format, K = 0 and the 5 RAG depths
    # set 0 of every searched task (all 6) is the chosen trial's model, not a finetune job
    assert expected["finetune"] == 3 * 10 and expected["validated_model"] == 3 * 6
    assert expected["hparam_trial"] == 3 * 6 * 5  # the 5 MMLU tasks and current events, 5 learning rates
    assert expected["knowledge_base_report"] == 6


def test_paper_dry_run_shows_the_question_target_and_the_review_requirement():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "results/paper/current_events/questions.parquet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("review_questions current_events: the human review questions.review=resources/current_events_review.csv "
            "(required to exist unless skip; only accepted questions enter unless questions.keep_unreviewed=False), "
            "then questions.target=910 questions sampled") in proc.stdout


def test_demo_grid_dry_run_matches_formula():
    config = load_config(ROOT / "config" / "demo.yaml")
    assert dry_run_counts("--configfile", "config/demo.yaml") == expected_job_counts(config)


def test_extended_demo_grid_dry_run_matches_formula():
    """LoRA's rules, a files-and-table task, the controls and the forgetting table: the formula too."""
    files = ["config/demo.yaml", "config/demo_extended.yaml"]
    assert dry_run_counts("--configfile", *files) == expected_job_counts(load_config(*(ROOT / f for f in files)))


@pytest.mark.parametrize("configfiles", [["config.yaml"], ["config/demo.yaml"],
                                         ["config/demo.yaml", "config/demo_extended.yaml"]])
def test_evaluation_jobs_score_every_cell_exactly_once(configfiles):
    config = load_config(*(ROOT / f for f in configfiles))
    written = []
    for rule, jobs in evaluation_jobs(config).items():
        for job in jobs:
            written += [SCORE_PATTERN.format(**{**job, "method": method.format(**job), "k": k})
                        for method, k in evaluation_cells(config)[rule]]
    assert sorted(written) == sorted(cell.path for cell in cells(config))


def test_no_rag_k_means_no_rag_jobs(tmp_path):
    path = write_config(tmp_path, lambda c: c["retrieval"].update(k=[0]))
    config = load_config(path)
    counts = expected_job_counts(config)
    assert "evaluate_ftrag" not in counts and "retrieve" not in counts
    assert evaluation_cells(config)["evaluate_base"] == [("base", 0)]
    assert dry_run_counts("--configfile", str(path)) == counts


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
