from kinject.cli import rule_main
from kinject.launch import launch

rule_main(snakemake, launch, "hparam_trial", snakemake.params.settings,
          {"base": snakemake.params.base, "train": snakemake.input.train, "validation": snakemake.input.validation,
           "out": snakemake.output.trial, "models": snakemake.output.models, "lr": snakemake.wildcards.lr,
           "work_dir": snakemake.params.work_dir},
          dict(snakemake.resources.items()), snakemake.threads, log_path=snakemake.log[0])
