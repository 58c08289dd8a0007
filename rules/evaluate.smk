# Evaluation with lm-evaluation-harness: each (task, K) becomes an lm-eval task written as data (a YAML
# over our JSONL, RAG context prepended); each grid cell is one lm-eval run and one score file.


rule lmeval_task:
    input:
        unpack(retrieval_input),
        questions="results/{task}/questions.parquet",
    output:
        directory("results/{task}/lmeval/k{k}"),
    params:
        task_name="kinject_{task}_k{k}",
    log:
        "logs/lmeval_task/{task}_k{k}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/lmeval_task.py"


rule evaluate:
    input:
        model=eval_model_input,
        task="results/{task}/lmeval/k{k}",
    output:
        "results/scores/{model}/{task}/{method}_k{k}_{shots}shot.json",
    params:
        model=eval_model_path,
        task_name="kinject_{task}_k{k}",
        batch_size=config["evaluation"].get("batch_size", 8),
        seed=config["seed"],
    log:
        "logs/evaluate/{model}_{task}_{method}_k{k}_{shots}shot.log",
    resources:
        **gpu_resources(),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/evaluate.py"
