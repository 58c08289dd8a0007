# Knowledge base: raw MediaWiki pages -> wikiextractor clean text -> chunks (the unit everywhere).


rule fetch:
    input:
        fetch_input,
    output:
        "results/{task}/raw/pages.xml",
    params:
        knowledge_base=lambda wc: task_cfg(wc)["knowledge_base"],
        mediawiki=config.get("mediawiki", {}),
    log:
        "logs/fetch/{task}.log",
    resources:
        mem_mb=2000,
        runtime=600,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/fetch.py"


rule clean_dump:
    input:
        "results/{task}/raw/pages.xml",
    output:
        "results/{task}/clean/articles.jsonl",
    log:
        "logs/clean_dump/{task}.log",
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/clean_dump.py"


rule make_chunks:
    input:
        "results/{task}/clean/articles.jsonl",
    output:
        "results/{task}/chunks.parquet",
    params:
        chunking=config["chunking"],
    log:
        "logs/make_chunks/{task}.log",
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/make_chunks.py"
