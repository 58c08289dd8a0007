# Result tables (CSV + parquet + markdown) and figures, in the shape of the paper's.


rule tables:
    input:
        [cell.path for cell in CELLS],
    output:
        tables=[report(path, caption="../report/tables.rst", category="Tables") for path in table_outputs() if path.endswith(".csv")],
        other=[path for path in table_outputs() if not path.endswith(".csv")],
        scores="results/tables/scores.csv",
        best_k=report("results/tables/best_k.csv", caption="../report/best_k.rst", category="Tables"),
    params:
        groups=canonical({name: task["group"] for name, task in config["tasks"].items()}),
    log:
        "logs/tables/tables.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/tables.py"


rule figures:
    input:
        scores="results/tables/scores.csv",
        losses=loss_files(),
    output:
        paraphrases_png=report("results/figures/paraphrases_vs_accuracy.png", caption="../report/paraphrases_vs_accuracy.rst", category="Figures"),
        paraphrases_csv="results/figures/paraphrases_vs_accuracy.csv",
        loss_png=report("results/figures/train_loss.png", caption="../report/train_loss.rst", category="Figures"),
        loss_csv="results/figures/train_loss.csv",
        k_png=report("results/figures/accuracy_vs_k.png", caption="../report/accuracy_vs_k.rst", category="Figures"),
        k_csv="results/figures/accuracy_vs_k.csv",
    log:
        "logs/figures/figures.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/figures.py"
