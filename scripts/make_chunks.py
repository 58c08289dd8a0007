from kinject.cli import rule_main
from kinject.data import make_chunks

rule_main(snakemake, make_chunks, snakemake.input[0], snakemake.output[0], **snakemake.params.chunking,
          summarize=lambda n: f"{n} chunks")
