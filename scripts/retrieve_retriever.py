from kinject.cli import rule_main
from kinject.evaluation.retrievers import retrieve

rule_main(snakemake, retrieve, snakemake.input.index, snakemake.input.chunks, snakemake.input.questions,
          snakemake.params.embedder, snakemake.output[0], k_max=snakemake.params.k_max)
