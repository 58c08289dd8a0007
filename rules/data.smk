# Knowledge base: raw MediaWiki pages (a dump or the API) -> wikiextractor clean text, or the user's own
# documents (a folder of text/markdown files, a table) -> the same clean text; -> chunks (the unit
# everywhere), and one report per task of what was read, kept, dropped and left behind.


rule fetch:
    wildcard_constraints:
        task=WIKI,
    input:
        knowledge_base_input,
    output:
        pages=expensive(res(PAGES)),
        counts=res(FETCH_COUNTS),
        revisions=res(REVISIONS),
    params:
        knowledge_base=lambda wc: canonical(task_cfg(wc)["knowledge_base"]),
        api=mediawiki_api,
        seed=links_seed,
    log:
        logpath("logs/fetch/{task}.log"),
    threads: config["resources"]["fetch"]["cpus_per_task"]
    resources:
        mem_mb=2000,
        runtime=600,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/fetch.py"


rule clean_dump:
    wildcard_constraints:
        task=WIKI,
    input:
        res(PAGES),
    output:
        articles=res(ARTICLES),
        counts=res(CLEAN_COUNTS),
    log:
        logpath("logs/clean_dump/{task}.log"),
    threads: config["resources"]["clean_dump"]["cpus_per_task"]
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/clean_dump.py"


rule load_corpus:
    wildcard_constraints:
        task=CORPUS,
    input:
        knowledge_base_input,
    output:
        articles=res(ARTICLES),
        fetch_counts=res(FETCH_COUNTS),
        clean_counts=res(CLEAN_COUNTS),
    params:
        knowledge_base=lambda wc: canonical(task_cfg(wc)["knowledge_base"]),
    log:
        logpath("logs/load_corpus/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/load_corpus.py"


rule make_chunks:
    input:
        res(ARTICLES),
    output:
        res(CHUNKS),
    params:
        chunking=canonical(config["chunking"]),
    log:
        logpath("logs/make_chunks/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/make_chunks.py"


rule knowledge_base_report:
    input:
        fetch=res(FETCH_COUNTS),
        clean=res(CLEAN_COUNTS),
        chunks=res(CHUNKS),
    output:
        res(KB_REPORT),
    log:
        logpath("logs/knowledge_base_report/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/knowledge_base_report.py"
