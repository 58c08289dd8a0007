from kinject.cli import rule_main
from kinject.questions import load_mmlu_questions

rule_main(snakemake, load_mmlu_questions, snakemake.params.questions, snakemake.output[0],
          folder=snakemake.input.hub or None)
