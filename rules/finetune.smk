# Unsupervised fine-tuning (continual pre-training) per (model, task, paraphrase set), with the
# learning-rate / epochs search on held-out validation paraphrases as its own sub-DAG. The search's trials
# keep every epoch's model; the chosen one is paraphrase set 0's fine-tuned model (rule validated_model).
# hparam_trial and finetune run `accelerate launch --config_file <finetune.accelerate_config>` with one
# process per GPU of the job (kinject.training.launch.launch_command builds the command).
from kinject.training.launch import check_launch, rule_settings

# an accelerate config that contradicts `precision`, or a batch that does not split over the processes,
# fails here, before any job runs
check_launch(config)


rule build_base_model:
    wildcard_constraints:
        model=models_regex(lambda m: "build" in m),
    input:
        chunks=expand(res("results/{task}/chunks.parquet"), task=TASKS),
        pretrain=lambda wc: config["models"][wc.model]["build"].get("pretrain_corpus", []),
    output:
        expensive(directory(res("results/models/{model}/base"))),
    params:
        build=lambda wc: canonical(config["models"][wc.model]["build"]),
        seed=config["seed"],
    log:
        logpath("logs/build_base_model/{model}.log"),
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
        train=res("results/{task}/paraphrases/paraphrases_k0.parquet"),
        validation=res("results/{task}/validation/paraphrases.parquet"),
    output:
        trial=res("results/hparams/{model}/{task}/lr{lr}.json"),
        # the trial's best epoch's model: kept until validated_model hard-links the chosen one (temp)
        models=temp(directory(res("results/hparams/{model}/{task}/lr{lr}"))),
    params:
        settings=lambda wc: canonical(rule_settings(config, "hparam_trial")),
        base=base_model_path,
        work_dir=lambda wc: res(f"results/.work/hparams/{wc.model}/{wc.task}/lr{wc.lr}"),
    log:
        logpath("logs/hparam_trial/{model}_{task}_lr{lr}.log"),
    threads: compute_threads("hparam_trial")
    resources:
        **compute_resources("hparam_trial"),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/hparam_trial.py"


rule choose_hparams:
    input:
        lambda wc: expand(res("results/hparams/{{model}}/{{task}}/lr{lr}.json"), lr=search_lrs()),
    output:
        res("results/hparams/{model}/{task}/chosen.json"),
    log:
        logpath("logs/choose_hparams/{model}_{task}.log"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/choose_hparams.py"


# Paraphrase set 0 of a task with a search: the trials trained on it, so the chosen trial's model at the
# chosen epoch is the fine-tuned model (the one validated is the one evaluated; nothing is retrained).
ruleorder: validated_model > finetune


rule validated_model:
    wildcard_constraints:
        task=tasks_regex(lambda t: "validation" in t),
        k="0",
    input:
        chosen=res("results/hparams/{model}/{task}/chosen.json"),
        trials=lambda wc: expand(res("results/hparams/{{model}}/{{task}}/lr{lr}.json"), lr=search_lrs()),
        models=lambda wc: expand(res("results/hparams/{{model}}/{{task}}/lr{lr}"), lr=search_lrs()),
    output:
        checkpoint=expensive(directory(res("results/finetune/{model}/{task}/k{k}/checkpoint"))),
        loss=res("results/finetune/{model}/{task}/k{k}/train_loss.csv"),
    log:
        logpath("logs/validated_model/{model}_{task}_k{k}.log"),
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/validated_model.py"


rule finetune:
    input:
        base=base_model_input,
        train=res("results/{task}/paraphrases/paraphrases_k{k}.parquet"),
        hparams=hparams_input(),
    output:
        checkpoint=expensive(directory(res("results/finetune/{model}/{task}/k{k}/checkpoint"))),
        loss=res("results/finetune/{model}/{task}/k{k}/train_loss.csv"),
    params:
        settings=lambda wc: canonical(rule_settings(config, "finetune", task_cfg(wc))),
        base=base_model_path,
        work_dir=res("results/.work/finetune/{model}/{task}/k{k}"),
    log:
        logpath("logs/finetune/{model}_{task}_k{k}.log"),
    threads: compute_threads("finetune")
    resources:
        **compute_resources("finetune"),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/finetune.py"


# LoRA (finetune.methods: lora; kinject.training.lora): the same search, adoption and fine-tuning with a LoRA adapter
# over the frozen base model, its learning rates finetune.lora.search_lr; adapters and searches under lora/.
ruleorder: validated_adapter > finetune_lora


use rule hparam_trial as hparam_trial_lora with:
    output:
        trial=res("results/hparams/{model}/{task}/lora/lr{lr}.json"),
        models=temp(directory(res("results/hparams/{model}/{task}/lora/lr{lr}"))),
    params:
        settings=lambda wc: canonical(rule_settings(config, "hparam_trial", method="lora")),
        work_dir=lambda wc: res(f"results/.work/hparams/{wc.model}/{wc.task}/lora/lr{wc.lr}"),
    log:
        logpath("logs/hparam_trial_lora/{model}_{task}_lr{lr}.log"),


use rule choose_hparams as choose_hparams_lora with:
    input:
        lambda wc: expand(res("results/hparams/{model}/{task}/lora/lr{lr}.json"), model=wc.model, task=wc.task, lr=search_lrs("lora")),
    output:
        res("results/hparams/{model}/{task}/lora/chosen.json"),
    log:
        logpath("logs/choose_hparams_lora/{model}_{task}.log"),


use rule validated_model as validated_adapter with:
    input:
        chosen=res("results/hparams/{model}/{task}/lora/chosen.json"),
        trials=lambda wc: expand(res("results/hparams/{model}/{task}/lora/lr{lr}.json"), model=wc.model, task=wc.task, lr=search_lrs("lora")),
        models=lambda wc: expand(res("results/hparams/{model}/{task}/lora/lr{lr}"), model=wc.model, task=wc.task, lr=search_lrs("lora")),
    output:
        checkpoint=expensive(directory(res("results/finetune/{model}/{task}/lora/k{k}/adapter"))),
        loss=res("results/finetune/{model}/{task}/lora/k{k}/train_loss.csv"),
    log:
        logpath("logs/validated_adapter/{model}_{task}_k{k}.log"),


use rule finetune as finetune_lora with:
    input:
        base=base_model_input,
        train=res("results/{task}/paraphrases/paraphrases_k{k}.parquet"),
        hparams=hparams_input("lora"),
    output:
        checkpoint=expensive(directory(res("results/finetune/{model}/{task}/lora/k{k}/adapter"))),
        loss=res("results/finetune/{model}/{task}/lora/k{k}/train_loss.csv"),
    params:
        settings=lambda wc: canonical(rule_settings(config, "finetune", task_cfg(wc), method="lora")),
        work_dir=res("results/.work/finetune/{model}/{task}/lora/k{k}"),
    log:
        logpath("logs/finetune_lora/{model}_{task}_k{k}.log"),
