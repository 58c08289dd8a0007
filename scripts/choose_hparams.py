from kinject.cli import rule_main
from kinject.hparams import choose

rule_main(snakemake, choose, snakemake.input, snakemake.output[0])
