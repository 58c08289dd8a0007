from pathlib import Path

from kinject.cli import rule_main
from kinject.report import write_tables

rule_main(snakemake, write_tables, snakemake.input.scores, snakemake.params.groups, Path(snakemake.output.scores).parent,
          snakemake.output.scores, snakemake.output.best_k, seed=snakemake.params.seed,
          comparisons_csv=snakemake.output.comparisons, trend_csv=snakemake.output.trend)
