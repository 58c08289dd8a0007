from kinject.cli import rule_main
from kinject.questions import write_review_sheet

rule_main(snakemake, write_review_sheet, snakemake.input.selected, snakemake.input.chunks, snakemake.output[0])
