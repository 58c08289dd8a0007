from kinject.cli import rule_main
from kinject.forgetting import write_forgetting

rule_main(snakemake, write_forgetting, snakemake.input.scores, snakemake.output.csv, snakemake.output.md,
          seed=snakemake.params.seed)
