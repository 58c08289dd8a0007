from kinject.cli import rule_main
from kinject.corpus import load_table_questions

rule_main(snakemake, load_table_questions, snakemake.input[0], snakemake.output[0])
