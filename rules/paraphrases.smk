# Paraphrases of every chunk (the LLM, the paper's prompt) and the paraphrase sets 0..N that FT trains on.


rule paraphrase_chunks:
    input:
        res(CHUNKS),
    output:
        paraphrases=res(GENERATED_PARAPHRASES),
        quarantine=res("results/{task}/paraphrases/generated_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "paraphrases")),
        total=config["paraphrases"]["count"],
        per_call=config["paraphrases"]["per_call"],
        seed=config["seed"],
    log:
        logpath("logs/paraphrase_chunks/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=1440,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/paraphrase_chunks.py"


rule paraphrase_set:
    input:
        chunks=res(CHUNKS),
        generated=generated_paraphrases_input,
    output:
        res(PARAPHRASE_SET),
    params:
        # read only by sets k > 0 (set 0 has no generated paraphrases), so set 0 never re-runs for it
        allow_incomplete=lambda wc: int(wc.k) > 0 and config["paraphrases"]["allow_incomplete"],
    log:
        logpath("logs/paraphrase_set/{task}_k{k}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/paraphrase_set.py"


rule validation_paraphrases:
    input:
        res(CHUNKS),
    output:
        paraphrases=res(VALIDATION_PARAPHRASES),
        quarantine=res("results/{task}/validation/paraphrases_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "paraphrases")),
        validation=lambda wc: canonical(task_cfg(wc)["validation"]),
        seed=config["seed"],
    log:
        logpath("logs/validation_paraphrases/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=720,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/validation_paraphrases.py"
