# Result tables (CSV + parquet + markdown) and figures, in the shape of the paper's, computed from the
# per-question records: intervals, K chosen by cross-fitting, paired comparisons, the paraphrase trend.


rule tables:
    input:
        scores=[res(cell.path) for cell in CELLS],
        records=[res(cell.records) for cell in CELLS],
        clusters=[res(QUESTION_CLUSTERS.format(task=task)) for task in sorted({cell.task for cell in CELLS})],
    output:
        tables=[report(path, caption="../report/tables.rst", category="Tables") for path in table_outputs() if path.endswith(".csv")],
        other=[path for path in table_outputs() if not path.endswith(".csv")],
        scores=res(SCORES_TABLE),
        best_k=report(res(TABLE.format(name="best_k.csv")), caption="../report/best_k.rst", category="Tables"),
        comparisons=report(res(TABLE.format(name="comparisons.csv")), caption="../report/comparisons.rst", category="Tables"),
        comparisons_md=res(TABLE.format(name="comparisons.md")),
        trend=report(res(TABLE.format(name="paraphrase_trend.csv")), caption="../report/paraphrase_trend.rst", category="Tables"),
    params:
        groups=canonical({name: task["group"] for name, task in config["tasks"].items()}),
        seed=config["seed"],  # the question halves of cross-fitting and the bootstrap resamples
    log:
        logpath("logs/tables/tables.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/tables.py"


# Each question's cluster (its source chunk, its table's group, or itself: kinject.reporting.clusters), the unit
# the tables' intervals, bootstrap, tests and K halves resample or keep together; read by the tables from the
# question file, so no evaluation job changes.
rule question_clusters:
    input:
        questions=res(QUESTIONS),
        table=question_group_table,
    output:
        res(QUESTION_CLUSTERS),
    params:
        group_column=lambda wc: task_cfg(wc)["questions"].get("group_column"),
    log:
        logpath("logs/question_clusters/{task}.log"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/question_clusters.py"


rule figures:
    input:
        scores=res(SCORES_TABLE),
        trend=res(TABLE.format(name="paraphrase_trend.csv")),
        losses=loss_files(),
    output:
        paraphrases_png=report(res(FIGURE.format(name="paraphrases_vs_accuracy.png")), caption="../report/paraphrases_vs_accuracy.rst", category="Figures"),
        paraphrases_csv=res(FIGURE.format(name="paraphrases_vs_accuracy.csv")),
        synthetic_png=report(res(FIGURE.format(name="synthetic_tokens_vs_accuracy.png")), caption="../report/synthetic_tokens_vs_accuracy.rst", category="Figures"),
        synthetic_csv=res(FIGURE.format(name="synthetic_tokens_vs_accuracy.csv")),
        loss_png=report(res(FIGURE.format(name="train_loss.png")), caption="../report/train_loss.rst", category="Figures"),
        loss_csv=res(FIGURE.format(name="train_loss.csv")),
        k_png=report(res(FIGURE.format(name="accuracy_vs_k.png")), caption="../report/accuracy_vs_k.rst", category="Figures"),
        k_csv=res(FIGURE.format(name="accuracy_vs_k.csv")),
    log:
        logpath("logs/figures/figures.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/figures.py"


# Forgetting: each control's accuracy on every fine-tuned checkpoint against its base model's, paired over
# the same questions (kinject.reporting.forgetting).
rule forgetting:
    input:
        scores=[res(path) for path in control_scores(config)],
        records=[res(records_path(path)) for path in control_scores(config)],
    output:
        csv=report(res(TABLE.format(name="forgetting.csv")), caption="../report/forgetting.rst", category="Tables"),
        md=res(TABLE.format(name="forgetting.md")),
    params:
        seed=config["seed"],  # the bootstrap resamples
    log:
        logpath("logs/forgetting/forgetting.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/forgetting.py"


# Retrieval diagnostics (kinject.reporting.retrieval): recall@K of each question's source chunk per retriever
# listed, and per RAG cell the split of its answers by whether the source was retrieved. Read from the question
# files, the retrieved files and the RAG cells' records, so no evaluation job changes.
rule retrieval_tables:
    input:
        questions=expand(res(QUESTIONS), task=TASKS),
        clusters=expand(res(QUESTION_CLUSTERS), task=TASKS),
        retrieved=[retrieved_of(r.name, task) for task in TASKS for r in RUN_RETRIEVERS if not r.oracle],
        scores=[res(cell.path) for cell in CELLS if cell.k > 0],
        records=[res(cell.records) for cell in CELLS if cell.k > 0],
    output:
        **{key: res(TABLE.format(name=name)) for key, name in RETRIEVAL_TABLES.items()},
    params:
        tasks=TASKS,
        retrievers=[r.name for r in RUN_RETRIEVERS if not r.oracle],
        ks=RAG_KS,
    log:
        logpath("logs/retrieval_tables/retrieval_tables.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/retrieval_tables.py"
