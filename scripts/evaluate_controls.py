from kinject.cli import rule_main
from kinject.evaluate import Run, run_lmeval

p = snakemake.params
runs = [Run(task_dir, f"kinject_control_{control}", out, meta={"model": snakemake.wildcards.model, "control": control,
                                                               "checkpoint": p.checkpoint})
        for task_dir, out, control in zip(snakemake.input.tasks, snakemake.output.scores, snakemake.params.controls, strict=True)]
rule_main(snakemake, run_lmeval, p.model, runs, batch_size=snakemake.config["evaluation"]["batch_size"],
          seed=snakemake.config["seed"], precision=p.precision, shared_prefix=p.shared_prefix,
          max_truncated_fraction=snakemake.config["evaluation"]["max_truncated_fraction"], adapter=p.get("adapter"),
          summarize=lambda scores: f"{p.checkpoint}: " + ", ".join(f"{s['control']} {s['accuracy']:.3f}" for s in scores))
