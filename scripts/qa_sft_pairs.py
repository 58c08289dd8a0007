from kinject.cli import rule_main
from kinject.qa.leakage import build_pairs

rule_main(snakemake, build_pairs, snakemake.input.candidates, snakemake.input.selected, snakemake.input.questions,
          snakemake.params.embedder, snakemake.output.pairs, snakemake.output.counts, task=snakemake.wildcards.task,
          **snakemake.params.settings)
