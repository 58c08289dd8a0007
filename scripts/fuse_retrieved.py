from kinject.cli import rule_main
from kinject.evaluation.retrievers import fuse

rule_main(snakemake, fuse, dict(zip(snakemake.params.parts, snakemake.input.parts)), snakemake.input.questions,
          snakemake.output[0], k_max=snakemake.params.k_max, **snakemake.params.settings)
