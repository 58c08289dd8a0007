from kinject.cli import rule_main
from kinject.training.launch import launch

rule_main(snakemake, launch, "finetune", snakemake.params.settings,
          {"base": snakemake.params.base, "train": snakemake.input.train, "hparams": snakemake.input.hparams or None,
           "match_steps_of": snakemake.input.matched, "out": snakemake.output.checkpoint,
           "loss_csv": snakemake.output.loss, "work_dir": snakemake.params.work_dir},
          dict(snakemake.resources.items()), snakemake.threads, log_path=snakemake.log[0])
