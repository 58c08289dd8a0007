from kinject.cli import rule_main
from kinject.evaluation.rerank import rerank

p = snakemake.params
rule_main(snakemake, rerank, p.base, dict(zip(p.index_names, snakemake.input.indexes, strict=True)),
          snakemake.input.chunks, snakemake.input.questions, p.embedder, p.model, snakemake.output[0],
          k_max=p.k_max, top_n=p.top_n, batch_size=snakemake.config["retrieval"]["rerank"]["batch_size"],
          settings=p.settings)
