from kinject.cli import rule_main
from kinject.retrieval import extract_embedder

rule_main(snakemake, extract_embedder, snakemake.output[0])
