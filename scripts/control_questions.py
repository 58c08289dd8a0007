from kinject.cli import rule_main
from kinject.questions import load_control_questions

rule_main(snakemake, load_control_questions, snakemake.params.spec, snakemake.output[0], folder=snakemake.params.hub)
