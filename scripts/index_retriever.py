from kinject.cli import rule_main
from kinject.evaluation.retrievers import build_index

rule_main(snakemake, build_index, snakemake.input.chunks, snakemake.params.embedder, snakemake.output[0],
          **snakemake.params.settings)
