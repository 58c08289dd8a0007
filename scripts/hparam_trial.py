from kinject.cli import rule_main
from kinject.hparams import run_trial

rule_main(snakemake, run_trial, snakemake.params.base, snakemake.input.train, snakemake.input.validation,
          snakemake.output[0], lr=float(snakemake.wildcards.lr), finetune=snakemake.params.finetune,
          seed=snakemake.params.seed, work_dir=snakemake.params.work_dir)
