# Forgetting (evaluation.controls): question sets outside every knowledge base, scored 0-shot without
# retrieval in the paper's format (options) on each base model and on every fine-tuned checkpoint (of every
# fine-tuning method), one job per checkpoint scoring every control with one model load; rule forgetting compares them.


use rule download_dataset as download_control_dataset with:
    output:
        folder=directory(res(HUB_CONTROL_DIR)),
        meta=res(f"{HUB_CONTROL_DIR}.json"),
    params:
        source=lambda wc: hub_source(res(HUB_CONTROL_DIR.format(control=wc.control))),
    log:
        logpath("logs/download_dataset/controls_{control}.log"),


rule control_questions:
    input:
        control_input,
    output:
        res(CONTROL_QUESTIONS),
    params:
        spec=lambda wc: canonical(control_settings(control_spec(wc))),
        hub=lambda wc: res(HUB_CONTROL_DIR.format(control=wc.control)) if QUESTION_SOURCES[control_spec(wc)["source"]].hub else None,
    log:
        logpath("logs/control_questions/{control}.log"),
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/control_questions.py"


rule control_lmeval_task:
    input:
        questions=res(CONTROL_QUESTIONS),
    output:
        directory(res(CONTROL_LMEVAL)),
    params:
        task_name="kinject_control_{control}",
    log:
        logpath("logs/control_lmeval_task/{control}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/control_lmeval_task.py"


rule evaluate_controls_base:
    input:
        model=base_model_input,
        tasks=expand(res(CONTROL_LMEVAL), control=CONTROLS),
    output:
        scores=control_outputs("base"),
        records=control_outputs("base", "parquet"),
    params:
        model=base_model_path,
        checkpoint="base",
        controls=CONTROLS,
        shared_prefix=config["evaluation"]["shared_prefix"],
        precision=config["precision"],
    log:
        logpath("logs/evaluate_controls/{model}_base.log"),
    threads: compute_threads("evaluate")
    resources:
        **compute_resources("evaluate"),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/evaluate_controls.py"


# Every fine-tuning method's checkpoints (kinject.training.methods), one job per checkpoint (not a control's: the
# steps-matched control is compared with FT-par{k}, not scored for forgetting).
# (The rules' directives sit two columns in, their values four, as at top level: Snakemake records a script
# rule's `script:` line, indentation included, and re-runs every finished job whose recorded line differs.)
for method in (m for m in METHODS.values() if "evaluate_controls" in m.stages):

    rule:
      name:
        method.rule("evaluate_controls")
      input:
        **checkpoint_input(method),
        tasks=expand(res(CONTROL_LMEVAL), control=CONTROLS),
      output:
        scores=control_outputs(method.name),
        records=control_outputs(method.name, "parquet"),
      params:
        **checkpoint_params(method),
        checkpoint=f"{{task}}/{method.cell('{p}')}",
        controls=CONTROLS,
        shared_prefix=config["evaluation"]["shared_prefix"],
        precision=config["precision"],
      log:
        logpath(f"logs/evaluate_controls/{{model}}_{{task}}_{method.cell('{p}')}.log"),
      threads: compute_threads("evaluate")
      resources:
        **compute_resources("evaluate"),
      conda:
        "../envs/evaluate.yaml"
      script:
        "../scripts/evaluate_controls.py"
