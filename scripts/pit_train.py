from kinject.cli import rule_main
from kinject.training.pit import build_training_file

rule_main(snakemake, build_training_file, snakemake.input.pairs, snakemake.input.texts, snakemake.output[0],
          task=snakemake.wildcards.task, k=int(snakemake.wildcards.k))
