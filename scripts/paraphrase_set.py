from kinject.cli import rule_main
from kinject.paraphrases import paraphrase_set

rule_main(snakemake, paraphrase_set, snakemake.input.chunks, snakemake.input.generated or None,
          snakemake.output[0], k=int(snakemake.wildcards.k),
          allow_incomplete=snakemake.params.allow_incomplete)
