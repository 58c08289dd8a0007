from kinject.cli import rule_main
from kinject.evaluation.retrievers import source_context

rule_main(snakemake, source_context, snakemake.input.questions, snakemake.output[0])
