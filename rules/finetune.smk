# Unsupervised fine-tuning (continual pre-training) per (model, task, paraphrase set), with the
# learning-rate / epochs search on held-out validation paraphrases as its own sub-DAG. The search's trials
# keep every epoch's model; the chosen one is paraphrase set 0's fine-tuned model (rule validated_model).
# hparam_trial and finetune run `accelerate launch --config_file <finetune.accelerate_config>` with one
# process per GPU of the job (kinject.training.launch.launch_command builds the command).
#
# Every fine-tuning method (kinject.training.methods.METHODS) gets these four rules, named
# and pathed by its registry entry: hparam_trial{suffix}, choose_hparams{suffix}, validated_model (or
# validated_adapter) and finetune{suffix}, its artifacts under its folder. A control of another method (the
# steps-matched control) gets its finetune{suffix} rule only, at the end. A finetune rule's {k} may carry an
# extra training seed's tag (10_s7: set 10 trained with seed 7, kinject.training.seeds), read by its inputs and
# settings; the run's own seed's runs are untagged, as they always were.
from kinject.grid import ft_methods, trains_on_pairs
from kinject.paths import PIT_TRAIN, QA_SFT_CANDIDATES, QA_SFT_COUNTS, QA_SFT_EXTRA, QA_SFT_TRAIN
from kinject.training.launch import check_launch, rule_settings
from kinject.training.qa_sft import EXTRA_SEED, extra_per_chunk
from kinject.training.qa_sft import settings as qa_sft_settings

# an accelerate config that contradicts `precision`, or a batch that does not split over the processes,
# fails here, before any job runs
check_launch(config)


rule build_base_model:
    wildcard_constraints:
        model=models_regex(lambda m: "build" in m),
    input:
        chunks=expand(res(CHUNKS), task=TASKS),
        pretrain=lambda wc: config["models"][wc.model]["build"].get("pretrain_corpus", []),
    output:
        expensive(directory(res(BASE_MODEL))),
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


# finetune.qa_sft.qa_per_chunk > 0: that many more candidate questions per chunk, one more call of the question
# prompt (seed + EXTRA_SEED: other requests than the test set's), joined to the candidates for the pairs
rule qa_sft_extra:
    wildcard_constraints:
        task=tasks_regex(lambda t: trains_on_pairs(config, t) and extra_per_chunk(config) > 0),
    input:
        res(CHUNKS),
    output:
        extra=res(QA_SFT_EXTRA),
        quarantine=res("results/{task}/qa_sft/extra_quarantine.jsonl"),
    params:
        llm=canonical(reply_settings(config["llm"], "questions")),
        per_chunk=extra_per_chunk(config),
        seed=config["seed"] + EXTRA_SEED,
    log:
        logpath("logs/qa_sft_extra/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=1440,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/qa_sft_extra.py"


rule qa_sft_candidates:
    wildcard_constraints:
        task=tasks_regex(lambda t: trains_on_pairs(config, t) and extra_per_chunk(config) > 0),
    input:
        candidates=res(CANDIDATES),
        extra=res(QA_SFT_EXTRA),
    output:
        res(QA_SFT_CANDIDATES),
    log:
        logpath("logs/qa_sft_candidates/{task}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/qa_sft_candidates.py"


# QA-SFT's training pairs (method qa_sft, kinject.training.qa_sft; PIT's too): the generated candidate questions the
# selection did not keep (and the extra ones), less every test question and near-duplicate of one
# (kinject.qa.leakage), with their counts.
rule qa_sft_pairs:
    wildcard_constraints:
        task=tasks_regex(lambda t: trains_on_pairs(config, t)),
    input:
        candidates=res(QA_SFT_CANDIDATES if extra_per_chunk(config) > 0 else CANDIDATES),
        selected=res(SELECTED),
        questions=res(QUESTIONS),
        embedder=embedder_input,
    output:
        pairs=res(QA_SFT_TRAIN),
        counts=res(QA_SFT_COUNTS),
    params:
        settings=canonical(qa_sft_settings(config)),
        embedder=embedder_path(),
    log:
        logpath("logs/qa_sft_pairs/{task}.log"),
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/retrieval.yaml"
    script:
        "../scripts/qa_sft_pairs.py"


# PIT's training data of paraphrase set k (methods pit and pit_mixed, kinject.training.pit): QA-SFT's pairs, then
# set k's texts, one file that its training rules read as their `train` input.
rule pit_train:
    wildcard_constraints:
        task=tasks_regex(lambda t: any(METHODS[m].train == PIT_TRAIN for m in ft_methods(config, t))),
    input:
        pairs=res(QA_SFT_TRAIN),
        texts=res(PARAPHRASE_SET),
    output:
        res(PIT_TRAIN),
    log:
        logpath("logs/pit_train/{task}_k{k}.log"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/pit_train.py"


# (The rules' directives sit two columns in, their values four, as at top level: Snakemake records a script
# rule's `script:` line, indentation included, and re-runs every finished job whose recorded line differs.)
for method in (m for m in METHODS.values() if not m.matches):

    rule:
      name:
        method.rule("hparam_trial")
      input:
        base=base_model_input,
        train=res(method.train_file(method.search_set(config))),
        validation=res(VALIDATION_PARAPHRASES),
      output:
        trial=res(method.hparams("lr{lr}.json")),
        # the trial's best epoch's model: kept until validated_model hard-links the chosen one (temp)
        models=temp(directory(res(method.hparams("lr{lr}")))),
      params:
        settings=training_settings("hparam_trial", method),
        base=base_model_path,
        work_dir=work_dir_of(method.hparams("lr{lr}")),
      log:
        logpath(f"logs/{method.rule('hparam_trial')}/{{model}}_{{task}}_lr{{lr}}.log"),
      threads: compute_threads("hparam_trial")
      resources:
        **compute_resources("hparam_trial"),
      conda:
        "../envs/train.yaml"
      script:
        "../scripts/hparam_trial.py"

    rule:
      name:
        method.rule("choose_hparams")
      input:
        trials(method),
      output:
        res(method.chosen),
      log:
        logpath(f"logs/{method.rule('choose_hparams')}/{{model}}_{{task}}.log"),
      localrule: True
      resources:
        mem_mb=1000,
        runtime=5,
      conda:
        "../envs/train.yaml"
      script:
        "../scripts/choose_hparams.py"

    # Paraphrase set 0 of a task with a search (a method's search_set: synthetic CPT's smallest budget): the trials
    # trained on it, so the chosen trial's model at the chosen epoch is the fine-tuned model (the one validated is the
    # one evaluated; nothing is retrained).
    rule:
      name:
        method.rule("validated")
      wildcard_constraints:
        task=tasks_regex(lambda t: "validation" in t),
        k=str(method.search_set(config)),
      input:
        chosen=res(method.chosen),
        trials=trials(method),
        models=trials(method, "lr{lr}"),
      output:
        checkpoint=expensive(directory(res(method.checkpoint))),
        loss=res(method.loss),
      log:
        logpath(f"logs/{method.rule('validated')}/{{model}}_{{task}}_k{{k}}.log"),
      localrule: True
      resources:
        mem_mb=1000,
        runtime=30,
      conda:
        "../envs/train.yaml"
      script:
        "../scripts/validated_model.py"

    rule:
      name:
        method.rule("finetune")
      wildcard_constraints:
        k=training_seeds.PATTERN,
      input:
        base=base_model_input,
        train=paraphrase_set_input(method.train),
        hparams=hparams_input(method.name),
      output:
        checkpoint=expensive(directory(res(method.checkpoint))),
        loss=res(method.loss),
      params:
        settings=training_settings("finetune", method),
        base=base_model_path,
        work_dir=res(work_dir(method.run_dir())),
      log:
        logpath(f"logs/{method.rule('finetune')}/{{model}}_{{task}}_k{{k}}.log"),
      threads: compute_threads("finetune")
      resources:
        **compute_resources("finetune"),
      conda:
        "../envs/train.yaml"
      script:
        "../scripts/finetune.py"

    workflow.ruleorder(method.rule("validated"), method.rule("finetune"))  # what `ruleorder: a > b` does


# A control of another method (kinject.training.methods: matches; kinject.training.matched): paraphrase set 0's
# data for as many optimizer steps as that method's run on set {k}, whose data is an input (the steps are
# counted from its blocks), at that method's learning rate and epochs (its search's chosen.json, where the task
# has a search: no search of its own).
for method in (m for m in METHODS.values() if m.matches):

    rule:
      name:
        method.rule("finetune")
      wildcard_constraints:
        k=training_seeds.PATTERN,
      input:
        base=base_model_input,
        train=res(PARAPHRASE_SET.format(task="{task}", k=0)),
        matched=paraphrase_set_input(PARAPHRASE_SET),
        hparams=hparams_input(method.name),
      output:
        checkpoint=expensive(directory(res(method.checkpoint))),
        loss=res(method.loss),
      params:
        settings=training_settings("finetune", method),
        base=base_model_path,
        work_dir=res(work_dir(method.run_dir())),
      log:
        logpath(f"logs/{method.rule('finetune')}/{{model}}_{{task}}_k{{k}}.log"),
      threads: compute_threads("finetune")
      resources:
        **compute_resources("finetune"),
      conda:
        "../envs/train.yaml"
      script:
        "../scripts/finetune_matched.py"
