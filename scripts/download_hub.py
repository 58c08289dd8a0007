from kinject.cli import rule_main
from kinject.hub import download
from kinject.lock import read_lock

rule_main(snakemake, download, snakemake.params.source, snakemake.output.folder, snakemake.output.meta,
          lock=read_lock(snakemake.config), lock_path=snakemake.config.get("lock"))
