from kinject.cli import rule_main
from kinject.evaluate import Run, run_lmeval

w = snakemake.wildcards
runs = [
    Run(task_dir, f"kinject_{w.task}_{w.format}_k{k}", out, meta={"model": w.model, "task": w.task, "method": method, "k": k})
    for task_dir, out, (method, k) in zip(snakemake.input.tasks, snakemake.output.scores, snakemake.params.runs, strict=True)
]
rule_main(snakemake, run_lmeval, snakemake.params.model, runs, shots=int(w.shots),
          batch_size=snakemake.config["evaluation"]["batch_size"], seed=snakemake.config["seed"],
          precision=snakemake.params.precision, shared_prefix=snakemake.params.shared_prefix,
          max_truncated_fraction=snakemake.config["evaluation"]["max_truncated_fraction"],
          adapter=snakemake.params.get("adapter"),
          summarize=lambda scores: "accuracy " + ", ".join(f"{s['method']} K={s['k']} {s['accuracy']:.3f}" for s in scores))
