from kinject.cli import rule_main
from kinject.llm import client_from_config
from kinject.paraphrases import validation_paraphrases

client = client_from_config({**snakemake.config["llm"], **snakemake.params.llm}, snakemake.config.get("plan"))
rule_main(snakemake, validation_paraphrases, snakemake.input[0], snakemake.output.paraphrases,
          snakemake.output.quarantine, client,
          n_chunks=snakemake.params.validation["chunks"], per_chunk=snakemake.params.validation["paraphrases"],
          seed=snakemake.params.seed)
