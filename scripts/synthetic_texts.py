from kinject.cli import rule_main
from kinject.qa.entigraph import relation_texts
from kinject.qa.llm import client_from_config

client = client_from_config({**snakemake.config["llm"], **snakemake.params.llm}, snakemake.config.get("plan"))
rule_main(snakemake, relation_texts, snakemake.input.chunks, snakemake.input.entities, snakemake.output.texts,
          snakemake.output.quarantine, client, **snakemake.params.settings, seed=snakemake.params.seed)
