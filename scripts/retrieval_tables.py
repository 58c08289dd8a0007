from kinject.cli import rule_main
from kinject.reporting.retrieval import write_retrieval_tables

tasks, retrievers = snakemake.params.tasks, snakemake.params.retrievers
pairs = [(task, name) for task in tasks for name in retrievers]  # the order of input.retrieved
rule_main(snakemake, write_retrieval_tables, dict(zip(tasks, snakemake.input.questions)),
          dict(zip(pairs, snakemake.input.retrieved)), dict(zip(tasks, snakemake.input.clusters)),
          snakemake.input.scores, snakemake.params.ks, dict(snakemake.output.items()))
