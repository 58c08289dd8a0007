from kinject.cli import rule_main
from kinject.models import convert_gguf

rule_main(snakemake, convert_gguf, snakemake.params.gguf, snakemake.output[0],
          summarize=lambda s: f"{s['parameters']:,} parameters from {s['file']}, saved in {s['dtype']}")
