from kinject.cli import rule_main
from kinject.questions import apply_review

rule_main(snakemake, apply_review, snakemake.input.selected, snakemake.input.review or None, snakemake.output[0])
