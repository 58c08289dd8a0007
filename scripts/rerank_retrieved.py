from kinject.cli import rule_main
from kinject.evaluation.rerank import rerank

p, config = snakemake.params, snakemake.config["retrieval"]
settings = {**p.settings, "dense": {**p.settings["dense"], "batch_size": config["batch_size"]}}
rule_main(snakemake, rerank, p.base, dict(zip(p.index_names, snakemake.input.indexes, strict=True)),
          snakemake.input.chunks, snakemake.input.questions, p.embedder, p.model, snakemake.output[0],
          k_max=p.k_max, top_n=p.top_n, batch_size=config["rerank"]["batch_size"], settings=settings)
