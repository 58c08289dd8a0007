from kinject.cli import rule_main
from kinject.llm import client_from_config
from kinject.paraphrases import paraphrase_chunks

client = client_from_config({**snakemake.config["llm"], **snakemake.params.llm}, snakemake.config.get("plan"))
rule_main(snakemake, paraphrase_chunks, snakemake.input[0], snakemake.output.paraphrases,
          snakemake.output.quarantine, client,
          count=snakemake.params.total, per_call=snakemake.params.per_call, seed=snakemake.params.seed)
