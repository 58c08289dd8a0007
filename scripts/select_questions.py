from kinject.cli import rule_main
from kinject.llm import client_from_config
from kinject.questions import select_questions

client = client_from_config({**snakemake.config["llm"], **snakemake.params.llm}, snakemake.config.get("plan"))
rule_main(snakemake, select_questions, snakemake.input[0], snakemake.output.selected,
          snakemake.output.quarantine, client,
          keep=snakemake.params.keep, seed=snakemake.params.seed,
          max_quarantined_fraction=snakemake.config["llm"]["max_quarantined_fraction"])
