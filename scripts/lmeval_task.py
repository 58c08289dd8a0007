from kinject.cli import rule_main
from kinject.evaluate import write_lmeval_task

rule_main(snakemake, write_lmeval_task, snakemake.input.questions, snakemake.output[0], snakemake.params.task_name,
          k=int(snakemake.wildcards.k), retrieved_parquet=snakemake.input.get("retrieved"),
          chunks_parquet=snakemake.input.get("chunks"), fmt=snakemake.wildcards.format,
          subject=snakemake.params.subject, fewshot_context=snakemake.params.fewshot_context)
