# Question sets: MMLU subjects, the user's own multiple-choice table, or current-events questions generated
# from the chunks by the LLM.


rule load_mmlu_questions:
    wildcard_constraints:
        task=tasks_regex(lambda t: t["questions"]["source"] in ("mmlu", "mmlu_csv")),
    input:
        mmlu_csv_input,
    output:
        "results/{task}/questions.parquet",
    params:
        questions=lambda wc: mmlu_settings(task_cfg(wc)["questions"]),
    log:
        "logs/load_mmlu_questions/{task}.log",
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/load_mmlu_questions.py"


rule load_table_questions:
    wildcard_constraints:
        task=TABLE_QUESTIONS,
    input:
        table_questions_input,
    output:
        "results/{task}/questions.parquet",
    log:
        "logs/load_table_questions/{task}.log",
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/load_table_questions.py"


rule generate_questions:
    wildcard_constraints:
        task=GENERATED,
    input:
        "results/{task}/chunks.parquet",
    output:
        candidates="results/{task}/questions/candidates.parquet",
        quarantine="results/{task}/questions/candidates_quarantine.jsonl",
    params:
        llm=canonical(reply_settings(config["llm"])),
        per_chunk=lambda wc: task_cfg(wc)["questions"]["per_chunk"],
        seed=config["seed"],
    log:
        "logs/generate_questions/{task}.log",
    resources:
        mem_mb=2000,
        runtime=1440,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/generate_questions.py"


rule select_questions:
    wildcard_constraints:
        task=GENERATED,
    input:
        "results/{task}/questions/candidates.parquet",
    output:
        selected="results/{task}/questions/selected.parquet",
        quarantine="results/{task}/questions/selected_quarantine.jsonl",
    params:
        llm=canonical(reply_settings(config["llm"])),
        keep=lambda wc: task_cfg(wc)["questions"]["keep"],
        seed=config["seed"],
    log:
        "logs/select_questions/{task}.log",
    resources:
        mem_mb=2000,
        runtime=720,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/select_questions.py"


rule review_questions:
    wildcard_constraints:
        task=GENERATED,
    input:
        selected="results/{task}/questions/selected.parquet",
        review=review_input,
    output:
        "results/{task}/questions.parquet",
    params:
        review=lambda wc: task_cfg(wc)["questions"]["review"],
        target=lambda wc: task_cfg(wc)["questions"].get("target"),
        seed=lambda wc: config["seed"] if "target" in task_cfg(wc)["questions"] else None,
    message:
        "review_questions {wildcards.task}: the human review questions.review={params.review} "
        "(required to exist unless skip), then questions.target={params.target} questions sampled"
    log:
        "logs/review_questions/{task}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/review_questions.py"

