# Question sets: MMLU subjects, the user's own multiple-choice table, or current-events questions generated
# from the chunks by the LLM.


rule load_mmlu_questions:
    wildcard_constraints:
        task=MMLU_QUESTIONS,
    input:
        questions_input,
        hub=mmlu_hub_input,
    output:
        res(QUESTIONS),
    params:
        questions=lambda wc: mmlu_settings(task_cfg(wc)["questions"]),
    log:
        logpath("logs/load_mmlu_questions/{task}.log"),
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
        questions_input,
    output:
        res(QUESTIONS),
    log:
        logpath("logs/load_table_questions/{task}.log"),
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
        res(CHUNKS),
    output:
        candidates=res(CANDIDATES),
        quarantine=res("results/{task}/questions/candidates_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "questions")),
        per_chunk=lambda wc: task_cfg(wc)["questions"]["per_chunk"],
        seed=config["seed"],
    log:
        logpath("logs/generate_questions/{task}.log"),
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
        res(CANDIDATES),
    output:
        selected=res(SELECTED),
        quarantine=res("results/{task}/questions/selected_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "selection")),
        keep=lambda wc: task_cfg(wc)["questions"]["keep"],
        seed=config["seed"],
    log:
        logpath("logs/select_questions/{task}.log"),
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
        selected=res(SELECTED),
        review=review_input,
    output:
        questions=res(QUESTIONS),
        counts=res("results/{task}/questions/review_counts.json"),
    params:
        review=lambda wc: task_cfg(wc)["questions"]["review"],
        keep_unreviewed=lambda wc: task_cfg(wc)["questions"]["keep_unreviewed"],
        target=lambda wc: task_cfg(wc)["questions"].get("target"),
        seed=lambda wc: config["seed"] if "target" in task_cfg(wc)["questions"] else None,
    message:
        "review_questions {wildcards.task}: the human review questions.review={params.review} "
        "(required to exist unless skip; only accepted questions enter unless "
        "questions.keep_unreviewed={params.keep_unreviewed}), then questions.target={params.target} questions sampled"
    log:
        logpath("logs/review_questions/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/review_questions.py"



# The sheet a person fills in (`kinject review TASK`, docs/questions.md): every selected question with its
# options, answer and source chunk, and an empty decision column; saved as questions.review once filled.
rule review_sheet:
    wildcard_constraints:
        task=GENERATED,
    input:
        selected=res(SELECTED),
        chunks=res(CHUNKS),
    output:
        res("results/{task}/questions/review_sheet.csv"),
    log:
        logpath("logs/review_sheet/{task}.log"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/review_sheet.py"
