from kinject.cli import rule_main
from kinject.evaluate import run_lmeval

w = snakemake.wildcards
rule_main(snakemake, run_lmeval, snakemake.params.model, snakemake.input.task, snakemake.params.task_name,
          snakemake.output[0], shots=int(w.shots), batch_size=snakemake.params.batch_size, seed=snakemake.params.seed,
          meta={"model": w.model, "task": w.task, "method": w.method, "k": int(w.k)})
