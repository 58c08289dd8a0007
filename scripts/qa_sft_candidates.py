from kinject.cli import rule_main
from kinject.qa.leakage import merge_extra

rule_main(snakemake, merge_extra, snakemake.input.candidates, snakemake.input.extra, snakemake.output[0])
