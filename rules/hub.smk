# Hub artifacts given by hub id (models, the embedder, MMLU), downloaded once by local rules (on the submit
# host: compute nodes often have no network) into declared folders, the resolved commit and file hashes in
# <folder>.json. Every other job loads those folders with HF_HUB_OFFLINE=1 (rules/common.smk). The params
# are the repository and the revision asked: changing a revision re-downloads and re-runs what reads that
# folder, nothing else. Under a lock (config `lock`) the job fetches the lock's commit and checks its hashes.


rule download_model:
    wildcard_constraints:
        model=HUB_MODELS,
    output:
        folder=directory(res(HUB_MODEL_DIR)),
        meta=res(f"{HUB_MODEL_DIR}.json"),
    params:
        source=lambda wc: hub_source(res(HUB_MODEL_DIR.format(model=wc.model))),
    log:
        logpath("logs/download_model/{model}.log"),
    resources:
        mem_mb=2000,
        runtime=240,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/download_hub.py"


rule download_embedder:
    output:
        folder=directory(EMBEDDER_DIR),
        meta=f"{EMBEDDER_DIR}.json",
    params:
        source=lambda wc: hub_source(EMBEDDER_DIR),
    log:
        logpath("logs/download_embedder/embedder.log"),
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/retrieval.yaml"
    script:
        "../scripts/download_hub.py"


rule download_dataset:
    wildcard_constraints:
        task=HUB_QUESTIONS,
    output:
        folder=directory(res(HUB_DATASET_DIR)),
        meta=res(f"{HUB_DATASET_DIR}.json"),
    params:
        source=lambda wc: hub_source(res(HUB_DATASET_DIR.format(task=wc.task))),
    log:
        logpath("logs/download_dataset/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/download_hub.py"
