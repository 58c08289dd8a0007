# Evaluation with lm-evaluation-harness: each (task, K) becomes an lm-eval task written as data (a YAML
# over our JSONL, RAG context prepended). Each grid cell is one score file and, beside it, its per-question
# records (kinject.paths.RECORDS_PATTERN); one job scores every cell of one model checkpoint at one shot
# count and format in a single lm-eval call, so the model is loaded once per job
# (kinject.grid.evaluation_cells): the base model for base and all RAG K, a fine-tuned one for FT, and
# again for all FT+RAG K. `use rule ... with:` replaces input, output and log whole and updates params by
# name. evaluation.batch_size (speed) and evaluation.max_truncated_fraction (whether a job may run at all)
# are read from the config by the job, not params: editing them re-runs no finished evaluation.


rule lmeval_task:
    input:
        unpack(retrieval_input),
        questions=res("results/{task}/questions.parquet"),
    output:
        directory(res(LMEVAL_TASK_DIR)),
    params:
        task_name="kinject_{task}_{format}_k{k}",
        subject=lambda wc: task_cfg(wc)["questions"].get("subject", wc.task) if wc.format == "letters" else "",
        fewshot_context=fewshot_context,
    log:
        logpath("logs/lmeval_task/{task}_{format}_k{k}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/lmeval_task.py"


rule evaluate_base:
    input:
        model=base_model_input,
        tasks=eval_task_inputs("evaluate_base"),
    output:
        scores=eval_score_outputs("evaluate_base"),
        records=eval_record_outputs("evaluate_base"),
    params:
        model=base_model_path,
        runs=eval_runs("evaluate_base"),
        shared_prefix=config["evaluation"]["shared_prefix"],
        precision=config["precision"],
        fewshot_seed=lambda wc: config["seed"] if int(wc.shots) else None,  # draws the examples; 0-shot has none
    log:
        logpath("logs/evaluate/{model}_{task}_base_{shots}shot_{format}.log"),
    threads: compute_threads("evaluate")
    resources:
        **compute_resources("evaluate"),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/evaluate.py"


use rule evaluate_base as evaluate_ft with:
    input:
        model=res("results/finetune/{model}/{task}/k{p}/checkpoint"),
        tasks=eval_task_inputs("evaluate_ft"),
    output:
        scores=eval_score_outputs("evaluate_ft"),
        records=eval_record_outputs("evaluate_ft"),
    params:
        model=lambda wildcards, input: input.model,
        runs=eval_runs("evaluate_ft"),
    log:
        logpath("logs/evaluate/{model}_{task}_ft-p{p}_{shots}shot_{format}.log"),


if RAG_KS:

    use rule evaluate_ft as evaluate_ftrag with:
        input:
            model=res("results/finetune/{model}/{task}/k{p}/checkpoint"),
            tasks=eval_task_inputs("evaluate_ftrag"),
        output:
            scores=eval_score_outputs("evaluate_ftrag"),
            records=eval_record_outputs("evaluate_ftrag"),
        params:
            runs=eval_runs("evaluate_ftrag"),
        log:
            logpath("logs/evaluate/{model}_{task}_ftrag-p{p}_{shots}shot_{format}.log"),


# A LoRA adapter is scored over its base model, unmerged: lm-eval's HF model applies it (its peft argument).
use rule evaluate_base as evaluate_lora with:
    input:
        model=base_model_input,
        adapter=res("results/finetune/{model}/{task}/lora/k{p}/adapter"),
        tasks=eval_task_inputs("evaluate_lora"),
    output:
        scores=eval_score_outputs("evaluate_lora"),
        records=eval_record_outputs("evaluate_lora"),
    params:
        runs=eval_runs("evaluate_lora"),
        adapter=lambda wildcards, input: input.adapter,
    log:
        logpath("logs/evaluate/{model}_{task}_lora-p{p}_{shots}shot_{format}.log"),


if RAG_KS:

    use rule evaluate_lora as evaluate_lorarag with:
        input:
            model=base_model_input,
            adapter=res("results/finetune/{model}/{task}/lora/k{p}/adapter"),
            tasks=eval_task_inputs("evaluate_lorarag"),
        output:
            scores=eval_score_outputs("evaluate_lorarag"),
            records=eval_record_outputs("evaluate_lorarag"),
        params:
            runs=eval_runs("evaluate_lorarag"),
        log:
            logpath("logs/evaluate/{model}_{task}_lorarag-p{p}_{shots}shot_{format}.log"),
