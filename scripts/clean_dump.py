from kinject.cli import rule_main
from kinject.data import clean_dump

rule_main(snakemake, clean_dump, snakemake.input[0], snakemake.output.articles, snakemake.output.counts,
          processes=snakemake.threads, summarize=lambda n: f"{n} articles with text")
