from kinject.cli import rule_main
from kinject.data import knowledge_base_report

rule_main(snakemake, knowledge_base_report, snakemake.input.fetch, snakemake.input.clean, snakemake.input.chunks,
          snakemake.output[0], task=snakemake.wildcards.task)
