from kinject.cli import rule_main
from kinject.report import write_tables

rule_main(snakemake, write_tables, snakemake.input, snakemake.params.tasks, "results/tables",
          snakemake.output.scores, snakemake.output.best_k)
