from kinject.cli import rule_main
from kinject.manifest import write_manifest

rule_main(snakemake, write_manifest, snakemake.config, snakemake.output[0], configfiles=snakemake.params.configfiles,
          hub=snakemake.params.hub, revisions=snakemake.params.revisions)
