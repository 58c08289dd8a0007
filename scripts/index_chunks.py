from kinject.cli import rule_main
from kinject.retrieval import build_index

rule_main(snakemake, build_index, snakemake.input.chunks, snakemake.params.embedder, snakemake.output[0],
          batch_size=snakemake.config["retrieval"]["batch_size"], exact_max=snakemake.params.exact_max)
