from kinject.cli import rule_main
from kinject.lock import fetch_locked

rule_main(snakemake, fetch_locked, snakemake.config, snakemake.params.knowledge_base, snakemake.wildcards.task,
          snakemake.output.pages, snakemake.output.counts, snakemake.output.revisions,
          {**snakemake.config.get("mediawiki", {}), "api": snakemake.params.api} if snakemake.params.api else {},
          snakemake.params.seed, threads=snakemake.threads)
