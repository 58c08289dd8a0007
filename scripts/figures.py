from kinject.cli import rule_main
from kinject.report import write_figures

rule_main(snakemake, write_figures, snakemake.input.scores, snakemake.input.losses, dict(snakemake.output.items()),
          trend_csv=snakemake.input.trend)
