from kinject.cli import rule_main
from kinject.qa.llm import client_from_config
from kinject.qa.sets import generate_questions

client = client_from_config({**snakemake.config["llm"], **snakemake.params.llm}, snakemake.config.get("plan"))
rule_main(snakemake, generate_questions, snakemake.input[0], snakemake.output.extra, snakemake.output.quarantine,
          client, per_chunk=snakemake.params.per_chunk, seed=snakemake.params.seed,
          max_quarantined_fraction=snakemake.config["llm"]["max_quarantined_fraction"])
