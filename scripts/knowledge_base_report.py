from kinject.cli import rule_main
from kinject.data import knowledge_base_report

rule_main(snakemake, knowledge_base_report, snakemake.input.fetch, snakemake.input.clean, snakemake.input.chunks,
          snakemake.output[0], task=snakemake.wildcards.task,
          summarize=lambda r: f"{r['pages_kept']} of {r['pages_in']} pages kept, {r['chunks']} chunks, residue per "
                              f"1,000 chunks {r['residue_per_1000_chunks']}")
