# Synthetic continued pre-training's data (method synthetic, kinject.training.synthetic; EntiGraph, Yang et al. 2025):
# each chunk's entities, the LLM's texts on pairs and triples of them (kinject.qa.entigraph), and per model and token
# budget k the training file, the chunks and the first k tokens of those texts (the model's own tokenizer).
from kinject.paths import SYNTHETIC_ENTITIES, SYNTHETIC_SET, SYNTHETIC_TEXTS
from kinject.grid import ft_methods
from kinject.qa.entigraph import text_settings

SYNTHETIC = tasks_regex(lambda t: "synthetic" in ft_methods(config, t))


rule synthetic_entities:
    wildcard_constraints:
        task=SYNTHETIC,
    input:
        res(CHUNKS),
    output:
        entities=res(SYNTHETIC_ENTITIES),
        quarantine=res("results/{task}/synthetic/entities_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "entities")),
        seed=config["seed"],
    log:
        logpath("logs/synthetic_entities/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=720,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/synthetic_entities.py"


rule synthetic_texts:
    wildcard_constraints:
        task=SYNTHETIC,
    input:
        chunks=res(CHUNKS),
        entities=res(SYNTHETIC_ENTITIES),
    output:
        texts=res(SYNTHETIC_TEXTS),
        quarantine=res("results/{task}/synthetic/texts_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "relations")),
        settings=canonical(text_settings(config)),
        seed=config["seed"],
    log:
        logpath("logs/synthetic_texts/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=1440,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/synthetic_texts.py"


rule synthetic_set:
    wildcard_constraints:
        task=SYNTHETIC,
        k=r"\d+",
    input:
        chunks=res(CHUNKS),
        texts=res(SYNTHETIC_TEXTS),
        base=base_model_input,
    output:
        res(SYNTHETIC_SET),
    log:
        logpath("logs/synthetic_set/{model}_{task}_k{k}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/synthetic_set.py"
