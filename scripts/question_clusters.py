from kinject.cli import rule_main
from kinject.reporting.clusters import question_clusters

rule_main(snakemake, question_clusters, snakemake.input.questions, snakemake.output[0],
          table=snakemake.input.table or None, group_column=snakemake.params.group_column)
