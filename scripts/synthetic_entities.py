from kinject.cli import rule_main
from kinject.qa.entigraph import entities
from kinject.qa.llm import client_from_config

client = client_from_config({**snakemake.config["llm"], **snakemake.params.llm}, snakemake.config.get("plan"))
rule_main(snakemake, entities, snakemake.input[0], snakemake.output.entities, snakemake.output.quarantine, client,
          seed=snakemake.params.seed)
