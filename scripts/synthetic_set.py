from kinject.cli import rule_main
from kinject.training.synthetic import build_set

rule_main(snakemake, build_set, snakemake.input.chunks, snakemake.input.texts, snakemake.input.base,
          snakemake.output[0], budget=int(snakemake.wildcards.k))
