from kinject.cli import rule_main
from kinject.models import build_from_config

rule_main(snakemake, build_from_config, snakemake.params.build, snakemake.input.chunks, snakemake.output[0],
          seed=snakemake.params.seed)
