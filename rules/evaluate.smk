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
        questions=res(QUESTIONS),
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


# Each fine-tuning method's checkpoints (kinject.training.methods): evaluate_{prefix} scores the fine-tuned
# model (K = 0) and evaluate_{prefix}rag every FT+RAG K. A whole model is loaded as it is; an adapter is scored
# over its base model, unmerged: lm-eval's HF model applies it (its peft argument). A control (the steps-matched
# one) has no FT+RAG cells, so no evaluate_{prefix}rag.
# (The rules' directives sit two columns in, their values four, as at top level: Snakemake records a script
# rule's `script:` line, indentation included, and re-runs every finished job whose recorded line differs.)
for method, rag in [(m, rag) for m in METHODS.values() for rag in (False, True) if (RAG_KS and m.rag) or not rag]:
    rule_name = method.rule("evaluate_rag" if rag else "evaluate")

    rule:
      name:
        rule_name
      input:
        **checkpoint_input(method),
        tasks=eval_task_inputs(rule_name),
      output:
        scores=eval_score_outputs(rule_name),
        records=eval_record_outputs(rule_name),
      params:
        **checkpoint_params(method),
        runs=eval_runs(rule_name),
        shared_prefix=config["evaluation"]["shared_prefix"],
        precision=config["precision"],
        fewshot_seed=lambda wc: config["seed"] if int(wc.shots) else None,
      log:
        logpath(f"logs/evaluate/{{model}}_{{task}}_{method.cell('{p}', rag)}_{{shots}}shot_{{format}}.log"),
      threads: compute_threads("evaluate")
      resources:
        **compute_resources("evaluate"),
      conda:
        "../envs/evaluate.yaml"
      script:
        "../scripts/evaluate.py"


# Each other retriever of retrieval.retrievers (bm25, hybrid, the oracle: kinject.evaluation.retrievers): its own
# lm-eval tasks (over its retrieved file, LMEVAL_TASK_BY) and its own evaluation jobs, evaluate_rag_<name> on the
# base model and evaluate_{prefix}rag_<name> on each FT+RAG checkpoint (kinject.grid.evaluation_cells), so dense's
# jobs are the same whatever else is listed.
for retriever in extra_retrievers(config):

    rule:
      name:
        f"lmeval_task_{retriever.name}"
      input:
        retrieved=retrieved_of(retriever.name),
        chunks=res(CHUNKS),
        questions=res(QUESTIONS),
      output:
        directory(res(lmeval_task_dir(retriever.name))),
      params:
        task_name="kinject_{task}_{format}_k{k}",
        subject=lambda wc: task_cfg(wc)["questions"].get("subject", wc.task) if wc.format == "letters" else "",
        fewshot_context=fewshot_context,
      log:
        logpath(f"logs/lmeval_task_{retriever.name}/{{task}}_{{format}}_k{{k}}.log"),
      resources:
        mem_mb=2000,
        runtime=10,
      conda:
        "../envs/evaluate.yaml"
      script:
        "../scripts/lmeval_task.py"

    rule:
      name:
        retriever_rule("evaluate_rag", retriever.name)
      input:
        model=base_model_input,
        tasks=eval_task_inputs(retriever_rule("evaluate_rag", retriever.name)),
      output:
        scores=eval_score_outputs(retriever_rule("evaluate_rag", retriever.name)),
        records=eval_record_outputs(retriever_rule("evaluate_rag", retriever.name)),
      params:
        model=base_model_path,
        runs=eval_runs(retriever_rule("evaluate_rag", retriever.name)),
        shared_prefix=config["evaluation"]["shared_prefix"],
        precision=config["precision"],
        fewshot_seed=lambda wc: config["seed"] if int(wc.shots) else None,
      log:
        logpath(f"logs/evaluate/{{model}}_{{task}}_rag-{retriever.name}_{{shots}}shot_{{format}}.log"),
      threads: compute_threads("evaluate")
      resources:
        **compute_resources("evaluate"),
      conda:
        "../envs/evaluate.yaml"
      script:
        "../scripts/evaluate.py"

    for method in [m for m in METHODS.values() if m.rag]:
        rule_name = retriever_rule(method.rule("evaluate_rag"), retriever.name)

        rule:
          name:
            rule_name
          input:
            **checkpoint_input(method),
            tasks=eval_task_inputs(rule_name),
          output:
            scores=eval_score_outputs(rule_name),
            records=eval_record_outputs(rule_name),
          params:
            **checkpoint_params(method),
            runs=eval_runs(rule_name),
            shared_prefix=config["evaluation"]["shared_prefix"],
            precision=config["precision"],
            fewshot_seed=lambda wc: config["seed"] if int(wc.shots) else None,
          log:
            logpath(f"logs/evaluate/{{model}}_{{task}}_{rag_cell(method.cell('{p}', True), retriever.name)}_{{shots}}shot_{{format}}.log"),
          threads: compute_threads("evaluate")
          resources:
            **compute_resources("evaluate"),
          conda:
            "../envs/evaluate.yaml"
          script:
            "../scripts/evaluate.py"
