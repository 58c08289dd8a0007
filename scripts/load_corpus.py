from kinject.cli import rule_main
from kinject.corpus import load_corpus

rule_main(snakemake, load_corpus, snakemake.params.knowledge_base, snakemake.output.articles,
          snakemake.output.fetch_counts, snakemake.output.clean_counts)
