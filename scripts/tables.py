from pathlib import Path

from kinject.cli import rule_main
from kinject.report import write_tables

rule_main(snakemake, write_tables, snakemake.input, snakemake.params.groups, Path(snakemake.output.scores).parent,
          snakemake.output.scores, snakemake.output.best_k)
