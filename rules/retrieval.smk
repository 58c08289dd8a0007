# RAG: embed every chunk (bge-large-en in the paper; all-MiniLM-L6-v2 in the demo), a FAISS index per
# task, and the top-K chunks (K up to max(retrieval.k)) for every question. retrieval.batch_size is read
# from the config by the jobs, not passed as a param: it sets speed, not results, so editing it re-runs nothing.


rule extract_embedder:
    output:
        directory(res(EMBEDDER_PACKAGE)),
    params:
        package=config["embedder"].get("package"),
    log:
        logpath("logs/extract_embedder/embedder.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/retrieval.yaml"
    script:
        "../scripts/extract_embedder.py"


rule index_chunks:
    input:
        chunks=res(CHUNKS),
        embedder=embedder_input,
    output:
        res(INDEX.format(task="{task}", file=RETRIEVER.index)),
    params:
        embedder=embedder_path(),
        exact_max=config["retrieval"]["exact_max"],  # the schema fills its default
    log:
        logpath("logs/index_chunks/{task}.log"),
    threads: compute_threads()
    resources:
        **compute_resources(),
    conda:
        "../envs/retrieval.yaml"
    script:
        "../scripts/index_chunks.py"


rule retrieve:
    input:
        index=res(INDEX.format(task="{task}", file=RETRIEVER.index)),
        chunks=res(CHUNKS),
        questions=res(QUESTIONS),
        embedder=embedder_input,
    output:
        res(RETRIEVED),
    params:
        embedder=embedder_path(),
        k_max=max(config["retrieval"]["k"]),
        query_prefix=config["embedder"].get("query_prefix", ""),
    log:
        logpath("logs/retrieve/{task}.log"),
    threads: compute_threads()
    resources:
        **compute_resources(),
    conda:
        "../envs/retrieval.yaml"
    script:
        "../scripts/retrieve.py"
