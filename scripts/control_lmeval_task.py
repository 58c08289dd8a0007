from kinject.cli import rule_main
from kinject.evaluate import write_lmeval_task

rule_main(snakemake, write_lmeval_task, snakemake.input.questions, snakemake.output[0], snakemake.params.task_name)
