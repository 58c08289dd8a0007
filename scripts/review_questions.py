from kinject.cli import rule_main
from kinject.questions import apply_review

rule_main(snakemake, apply_review, snakemake.input.selected, snakemake.params.review, snakemake.output.questions,
          keep_unreviewed=snakemake.params.keep_unreviewed, target=snakemake.params.target, seed=snakemake.params.seed,
          counts_out=snakemake.output.counts)
