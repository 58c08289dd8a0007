# Unsupervised fine-tuning (continual pre-training) per (model, task, paraphrase set), with the
# learning-rate / epochs search on held-out validation paraphrases as its own sub-DAG.


rule build_base_model:
    wildcard_constraints:
        model=models_regex(lambda m: "build" in m),
    input:
        chunks=expand("results/{task}/chunks.parquet", task=TASKS),
        pretrain=lambda wc: config["models"][wc.model]["build"].get("pretrain_corpus", []),
    output:
        expensive(directory("results/models/{model}/base")),
    params:
        build=lambda wc: config["models"][wc.model]["build"],
        seed=config["seed"],
    log:
        "logs/build_base_model/{model}.log",
    threads: compute_threads()
    resources:
        **compute_resources(),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/build_base_model.py"


rule hparam_trial:
    input:
        base=base_model_input,
        train="results/{task}/paraphrases/paraphrases_k0.parquet",
        validation="results/{task}/validation/paraphrases.parquet",
    output:
        "results/hparams/{model}/{task}/lr{lr}.json",
    params:
        base=base_model_path,
        finetune=config["finetune"],
        seed=config["seed"],
        work_dir=lambda wc: f"results/.work/hparams/{wc.model}/{wc.task}/lr{wc.lr}",
    log:
        "logs/hparam_trial/{model}_{task}_lr{lr}.log",
    threads: compute_threads("hparam_trial")
    resources:
        **compute_resources("hparam_trial"),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/hparam_trial.py"


rule choose_hparams:
    input:
        lambda wc: expand("results/hparams/{{model}}/{{task}}/lr{lr}.json", lr=search_lrs()),
    output:
        "results/hparams/{model}/{task}/chosen.json",
    log:
        "logs/choose_hparams/{model}_{task}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/choose_hparams.py"


rule finetune:
    input:
        base=base_model_input,
        train="results/{task}/paraphrases/paraphrases_k{k}.parquet",
        hparams=hparams_input,
    output:
        checkpoint=directory("results/finetune/{model}/{task}/k{k}/checkpoint"),
        loss="results/finetune/{model}/{task}/k{k}/train_loss.csv",
    params:
        base=base_model_path,
        accelerate=accelerate_args("finetune"),
        hparams=lambda wc, input: f"--hparams {input.hparams}" if input.hparams else "",
        ft=config["finetune"],
        seed=config["seed"],
        work_dir="results/.work/finetune/{model}/{task}/k{k}",
    log:
        "logs/finetune/{model}_{task}_k{k}.log",
    threads: compute_threads("finetune")
    resources:
        **compute_resources("finetune"),
    conda:
        "../envs/train.yaml"
    shell:
        "accelerate launch {params.accelerate} --num_machines 1 --mixed_precision no --dynamo_backend no"
        " -m kinject.finetune --base {params.base} --train {input.train} --out {output.checkpoint}"
        " --loss-csv {output.loss} --lr {params.ft[lr]} --epochs {params.ft[epochs]} {params.hparams}"
        " --batch-size {params.ft[batch_size]} --per-device-batch-size {params.ft[per_device_batch_size]}"
        " --block-size {params.ft[block_size]} --seed {params.seed} --work-dir {params.work_dir}"
        " > {log} 2>&1"
