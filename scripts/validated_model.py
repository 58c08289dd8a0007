from kinject.cli import rule_main
from kinject.hparams import adopt

rule_main(snakemake, adopt, snakemake.input.chosen, snakemake.input.trials, snakemake.input.models,
          snakemake.output.checkpoint, snakemake.output.loss)
