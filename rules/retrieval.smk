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


# priority: a few seconds' job that every RAG scoring job waits on, run as soon as it can; on 2 cores the
# scheduler otherwise ran a one-thread evaluation beside an idle core while this two-thread job waited
rule retrieve:
    priority: 1
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


# The other retrievers listed in retrieval.retrievers (kinject.evaluation.retrievers: bm25, hybrid, oracle): each
# its own index (where it has one) and retrieved file, read by its own lm-eval tasks (rules/evaluate.smk) and the
# retrieval diagnostics (rule retrieval_tables); dense's rules above and their jobs are the same whatever else is
# listed. Their settings (retrieval.bm25, retrieval.hybrid: the schema fills the defaults) are params.
for retriever in extra_retrievers(config):
    if retriever.index:

        rule:
          name:
            f"index_chunks_{retriever.name}"
          input:
            chunks=res(CHUNKS),
            embedder=embedder_input if retriever.embedder else [],
          output:
            directory(res(INDEX.format(task="{task}", file=retriever.index))),
          params:
            embedder=embedder_path() if retriever.embedder else None,
            settings=canonical(config["retrieval"].get(retriever.settings, {})),
          log:
            logpath(f"logs/index_chunks_{retriever.name}/{{task}}.log"),
          resources:
            mem_mb=4000,
            runtime=30,
          conda:
            "../envs/retrieval_lexical.yaml"
          script:
            "../scripts/index_retriever.py"

        rule:
          name:
            f"retrieve_{retriever.name}"
          input:
            index=res(INDEX.format(task="{task}", file=retriever.index)),
            chunks=res(CHUNKS),
            questions=res(QUESTIONS),
            embedder=embedder_input if retriever.embedder else [],
          output:
            res(retrieved_file(retriever.name)),
          params:
            embedder=embedder_path() if retriever.embedder else None,
            k_max=max(config["retrieval"]["k"]),
          log:
            logpath(f"logs/retrieve_{retriever.name}/{{task}}.log"),
          resources:
            mem_mb=4000,
            runtime=30,
          conda:
            "../envs/retrieval_lexical.yaml"
          script:
            "../scripts/retrieve_retriever.py"

    elif retriever.reranks:

        rule:
          name:
            f"retrieve_{retriever.name}"
          input:
            indexes=[res(INDEX.format(task="{task}", file=RETRIEVERS[n].index)) for n in index_chain(RERANK["base"])],
            chunks=res(CHUNKS),
            questions=res(QUESTIONS),
            embedder=embedder_input if RAG_RETRIEVER in index_chain(RERANK["base"]) else [],
            model=[RERANKER_DIR] if RERANKER_DIR in HUB else [],
          output:
            res(retrieved_file(retriever.name)),
          params:
            base=RERANK["base"],
            index_names=index_chain(RERANK["base"]),
            embedder=embedder_path() if RAG_RETRIEVER in index_chain(RERANK["base"]) else None,
            model=reranker_path(),
            k_max=max(config["retrieval"]["k"]),
            top_n=RERANK["top_n"],
            settings=canonical(rerank_settings()),
          log:
            logpath(f"logs/retrieve_{retriever.name}/{{task}}.log"),
          threads: compute_threads()
          resources:
            **compute_resources(),
          conda:
            "../envs/rerank.yaml"
          script:
            "../scripts/rerank_retrieved.py"

    elif retriever.oracle:

        rule:
          name:
            f"retrieve_{retriever.name}"
          input:
            questions=res(QUESTIONS),
          output:
            res(retrieved_file(retriever.name)),
          log:
            logpath(f"logs/retrieve_{retriever.name}/{{task}}.log"),
          resources:
            mem_mb=1000,
            runtime=5,
          conda:
            "../envs/data.yaml"
          script:
            "../scripts/oracle_context.py"

    else:

        rule:
          name:
            f"retrieve_{retriever.name}"
          input:
            parts=[retrieved_of(part) for part in retriever.parts],
            questions=res(QUESTIONS),
          output:
            res(retrieved_file(retriever.name)),
          params:
            parts=list(retriever.parts),
            k_max=max(config["retrieval"]["k"]),
            settings=canonical(config["retrieval"].get(retriever.settings, {})),
          log:
            logpath(f"logs/retrieve_{retriever.name}/{{task}}.log"),
          resources:
            mem_mb=2000,
            runtime=10,
          conda:
            "../envs/retrieval_lexical.yaml"
          script:
            "../scripts/fuse_retrieved.py"


# retrieval.rerank.model by hub id: downloaded once, as the embedder (rules/hub.smk); requested only where rerank is
# listed with a hub id (RERANKER_DIR in HUB)
rule download_reranker:
    output:
        folder=directory(RERANKER_DIR),
        meta=f"{RERANKER_DIR}.json",
    params:
        source=lambda wc: hub_source(RERANKER_DIR),
    log:
        logpath("logs/download_reranker/reranker.log"),
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/rerank.yaml"
    script:
        "../scripts/download_hub.py"
