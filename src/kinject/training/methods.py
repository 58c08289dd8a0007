"""Fine-tuning methods as data, as lm-evaluation-harness registers its models: a method is one ``Method``
entry, and the grid, the rules (rules/finetune.smk, evaluate.smk, controls.smk make theirs in a loop over
``METHODS``), the launcher, the planner and the reports read everything method-specific from it.

Adding a method is its module (what it trains: ``kinject.training.lora`` for LoRA) plus one ``register`` call
below. A method trains a whole model (``whole_model``: a checkpoint, scored as it is) or an adapter over the
frozen base model (scored over the base model, unmerged). Every method gets the same search, adoption of the
chosen trial and fine-tuning rules, with its own learning rates, artifacts and columns.

A method may instead be a control of another (``matches``): it trains paraphrase set 0's data at that method's
learning rate and epochs (its search's; none of its own) for as many optimizer steps as that method's run on set k
(``kinject.training.matched``), for the sets listed at config key ``sets_key`` only, with no FT+RAG or forgetting cells.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from kinject.errors import KinjectError
from kinject.paths import CONTROL_SCORE, FINETUNE_RUN, HPARAMS_FILE, PARAPHRASE_SET
from kinject.registry import Registry
from kinject.training import lora, matched, pit, qa_sft, synthetic


@dataclass(frozen=True)
class Method:
    name: str  # its value in finetune.methods / tasks.<t>.finetune_methods
    label: str  # its table columns: {label}, {label}-par{p}, {label}+RAG, ...
    prefix: str  # its cells' method names: {prefix}-p{p} (fine-tuned), {prefix}rag-p{p} (fine-tuned, then RAG)
    whole_model: bool  # a whole model's checkpoint, or an adapter over the frozen base model
    folder: str  # its runs' and searches' sub-folder under results/finetune/... and results/hparams/... ("" or "x/")
    suffix: str  # its training rules' names: hparam_trial{suffix}, choose_hparams{suffix}, finetune{suffix}
    lr: Callable[[dict], float]  # the learning rate of a task without a search
    search_lrs: Callable[[dict], list]  # the learning rates a task with validation searches
    search_key: str  # the config key of search_lrs, for errors
    options: Callable[[dict], dict]  # what it adds to the training rules' settings (params) and command line
    trainable: Callable[[dict, object], int] | None = None  # plan: trainable parameters of a model shape (None: all)
    # an adapter method: its command-line option (--{option}: its spec as JSON, from ``options``), how the
    # training process wraps the base model with it, and which state-dict entries its saved adapter keeps
    option: str | None = None
    wrap: Callable | None = None  # (model, spec, *, gradient_checkpointing) -> model
    saved_weight: Callable[[str], bool] | None = None
    # what it trains on: its training rules' `train` input (a path pattern with wildcard task, and k where it trains
    # each paraphrase set; model where it is the model's own) and which sets of a task it trains (None: the task's
    # paraphrase_sets, and ft_rag_paraphrase_sets for its +RAG cells; else (config, task, rag) -> its sets)
    train: str = PARAPHRASE_SET
    sets: Callable[[dict, dict, bool], list] | None = None
    # the set its search trains on, whose trial's model is that set's (rule validated): 0, or (config) -> the set
    search_set: Callable[[dict], int] = lambda config: 0
    # its sets are not paraphrase sets but amounts in this unit (synthetic CPT's "tok": k tokens of synthetic text):
    # its columns are {label}-{k}{unit}, and its trend is per ``trend_per`` of them, from FT's set 0 (none of them)
    unit: str | None = None
    trend_per: int = 1
    # a method trained on its own examples, not packed text: the training process's flag (--{data_option}, put on
    # its command line by ``options``), how it reads its `train` file (path -> rows) and makes examples of them, of
    # equal length unless its ``batching`` pads ((tokenizer, rows, block_size) -> [{input_ids, attention_mask, labels}])
    data_option: str | None = None
    read: Callable | None = None
    examples: Callable | None = None
    # its own training order and batches: (examples, *, seed, group (per-device batch size), pad_id) -> (a sampler
    # with set_epoch, a collator padding a batch); None: the Trainer's shuffle, equal-length examples stacked
    batching: Callable | None = None
    qa_pairs: bool = False  # it reads QA-SFT's pairs (rule qa_sft_pairs makes them for its tasks)
    check: Callable[[dict, str, dict, str], None] | None = None  # its own checks of a task: (config, key, task, source)
    tokens: Callable | None = None  # plan: its training tokens per epoch (config, task, corpus, root); None: set k's
    # a control of another method (its name): set 0's data for as many steps as that method's set k, at its
    # learning rate (its search's chosen.json); its models exist for the sets at config key ``sets`` only
    matches: str | None = None
    sets_key: str | None = None  # a dotted config key listing the paraphrase sets it has models of (None: every set)

    @property
    def artifact(self) -> str:
        """The folder a run saves: ``checkpoint`` (a whole model) or ``adapter``."""
        return "checkpoint" if self.whole_model else "adapter"

    def rule(self, stage: str) -> str:
        """Its rule for a stage: hparam_trial, choose_hparams, validated, finetune, evaluate, evaluate_rag,
        evaluate_controls."""
        names = {"validated": f"validated_model{self.suffix}" if self.whole_model else "validated_adapter",
                 "evaluate": f"evaluate_{self.prefix}", "evaluate_rag": f"evaluate_{self.prefix}rag",
                 "evaluate_controls": f"evaluate_controls_{self.prefix}"}
        return names.get(stage, f"{stage}{self.suffix}")

    def run_dir(self) -> str:
        """A fine-tuning run's folder (wildcards model, task, k = the paraphrase set)."""
        return FINETUNE_RUN.replace("{folder}", self.folder)

    def train_file(self, k="{k}") -> str:
        """Its training rules' `train` input for paraphrase set k (a search trial's: set 0)."""
        return self.train.replace("{k}", str(k))

    def trained_sets(self, config: dict, task: dict, rag: bool = False) -> list[int]:
        """The sets of a task it trains (``rag``: whose model is also RAG's generator)."""
        if self.sets:
            return list(self.sets(config, task, rag))
        return ft_rag_sets(task) if rag else sorted(task["paraphrase_sets"])

    @property
    def checkpoint(self) -> str:
        return f"{self.run_dir()}/{self.artifact}"

    @property
    def loss(self) -> str:
        return f"{self.run_dir()}/train_loss.csv"

    def hparams(self, file: str) -> str:
        """A file of its search: lr{lr}.json (a trial), lr{lr} (the trial's model), chosen.json."""
        return HPARAMS_FILE.replace("{folder}", self.folder).replace("{file}", file)

    @property
    def chosen(self) -> str:
        """Its search's choice; a control's is the search of the method it matches."""
        return METHODS[self.matches].chosen if self.matches else self.hparams("chosen.json")

    @property
    def rag(self) -> bool:
        """Whether its models are also RAG's generator (FT+RAG cells) and scored on the controls: not a control's."""
        return self.matches is None

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages it has rules of (:meth:`rule`): a control trains and is scored, with no search of its own, no
        FT+RAG and no forgetting controls."""
        if self.matches:
            return ("finetune", "evaluate")
        return ("hparam_trial", "choose_hparams", "validated", "finetune", "evaluate", "evaluate_rag",
                "evaluate_controls")

    def listed_sets(self, config: dict) -> list[int] | None:
        """The paraphrase sets at its config key ``sets_key`` (None: it has a model of every set of a task)."""
        if self.sets_key is None:
            return None
        value = config
        for key in self.sets_key.split("."):
            value = value.get(key, {})
        return sorted(set(value or []))

    @property
    def control_score(self) -> str:
        """A control's score file on one of its checkpoints (wildcards model, task, p, control)."""
        return CONTROL_SCORE.replace("{method}", f"{{task}}/{self.prefix}-p{{p}}")

    def cell(self, p, rag: bool = False) -> str:
        return f"{self.prefix}{'rag' if rag else ''}-p{p}"

    def column(self, p) -> str:
        """Its table column of paraphrase set p: {label} (set 0), {label}-par{p}; a control's {label}{p} (FT-steps4);
        a method whose sets are amounts, {label}-{p}{unit} (SynCPT-20000tok)."""
        if self.unit:
            return f"{self.label}-{int(p)}{self.unit}"
        if int(p) == 0:
            return self.label
        return f"{self.label}{int(p)}" if self.matches else f"{self.label}-par{int(p)}"

    def set_of(self, column: str) -> int | None:
        """The inverse of :meth:`column`: the set (or amount) p whose column ``column`` is, None when it is not one of
        this method's (a label may hold a hyphen: QA-SFT-par10 is QA-SFT's, not FT's)."""
        if self.unit:
            pattern = rf"-(\d+){re.escape(self.unit)}"
        else:
            pattern = r"(\d+)?" if self.matches else r"(?:-par(\d+))?"
        m = re.fullmatch(re.escape(self.label) + pattern, column)
        return None if m is None else int(m[1] or 0)

    def sets_in(self, columns) -> list[int]:
        """The sets (or amounts) whose columns are among ``columns``, in order."""
        return sorted(p for p in map(self.set_of, columns) if p is not None)

    def family(self, p) -> str:
        """Its column of set p with the set left out, naming the family of contrasts it belongs to: FT-par10 ->
        FT-par, FT-steps10 -> FT-steps, SynCPT-20000tok -> SynCPT; set 0's column (FT) stays."""
        if self.unit or self.matches or not int(p):
            return self.label
        return f"{self.label}-par"


def ft_rag_sets(task: dict) -> list[int]:
    """Paraphrase sets whose fine-tuned model is also RAG's generator (default: the largest set)."""
    return list(task.get("ft_rag_paraphrase_sets", [max(task["paraphrase_sets"])]))


METHODS = Registry("fine-tuning method")


def register(method: Method) -> Method:
    """One entry per name (kinject.registry), and one per cell prefix: a prefix names its cells and rules."""
    if any(m.prefix == method.prefix for m in METHODS.values()):
        raise ValueError(f"fine-tuning method {method.name}: prefix {method.prefix} is registered twice")
    return METHODS.register(method)


def method(name: str, key: str = "finetune.methods", source: str = "config") -> Method:
    """The registered method ``name``; one line naming the key and the registered names otherwise (a control is
    not listed: its sets are)."""
    if name in METHODS and METHODS[name].matches:
        raise KinjectError(source, f"{key}: {name!r} is a control of {METHODS[name].matches}, not a method of its own: "
                                   f"list the paraphrase sets it matches in {METHODS[name].sets_key}")
    return METHODS.lookup(name, key, source, among=[n for n, m in METHODS.items() if not m.matches])


def by_prefix(prefix: str) -> Method:
    """The method whose cells are {prefix}-p{p}."""
    return next(m for m in METHODS.values() if m.prefix == prefix)


def by_column(column: str) -> tuple[Method, int] | None:
    """(method, set) of a fine-tuned table column without +RAG (:meth:`Method.column`'s inverse); None for another
    column (Base, RAG, RAG (bm25))."""
    return next(((m, p) for m in METHODS.values() if (p := m.set_of(column)) is not None), None)


def adapter_methods() -> list[Method]:
    """The methods that train an adapter (each with its command-line option)."""
    return [m for m in METHODS.values() if m.option]


def data_methods() -> list[Method]:
    """The methods trained on their own examples (each with its command-line flag)."""
    return [m for m in METHODS.values() if m.data_option]


def cell_method(cell: str) -> tuple[Method, bool] | None:
    """(method, with RAG) of a fine-tuned cell's method name (ft-p4, lorarag-p2, ftrag-bm25-p1: another retriever's
    name after the stem); None for base and rag."""
    stem = cell.split("-p")[0].split("-")[0]
    for m in METHODS.values():
        if stem in (m.prefix, f"{m.prefix}rag"):
            return m, stem.endswith("rag") and stem != m.prefix
    return None


# The registered methods --------------------------------------------------------------------------------------

register(Method(
    name="full", label="FT", prefix="ft", whole_model=True, folder="", suffix="",
    lr=lambda config: config["finetune"]["lr"],
    search_lrs=lambda config: list(config["finetune"].get("search", {}).get("lr", [])), search_key="finetune.search.lr",
    options=lambda config: {}))


register(Method(
    name="lora", label="LoRA", prefix="lora", whole_model=False, folder="lora/", suffix="_lora",
    lr=lambda config: config["finetune"]["lora"]["lr"],
    search_lrs=lambda config: list(config["finetune"]["lora"].get("search_lr", [])), search_key="finetune.lora.search_lr",
    options=lora.options, trainable=lora.trainable_parameters, option="lora", wrap=lora.add_adapter,
    saved_weight=lora.saved_weight))


register(Method(
    name="qa_sft", label="QA-SFT", prefix="qasft", whole_model=True, folder="qa_sft/", suffix="_qa_sft",
    lr=lambda config: config["finetune"]["qa_sft"]["lr"],
    search_lrs=lambda config: list(config["finetune"]["qa_sft"].get("search_lr", [])),
    search_key="finetune.qa_sft.search_lr", options=qa_sft.options, train=qa_sft.TRAIN, sets=qa_sft.sets,
    data_option=qa_sft.OPTION, read=qa_sft.read_pairs, examples=qa_sft.answer_only_examples, check=qa_sft.check,
    tokens=qa_sft.training_tokens, qa_pairs=True))


# PIT (kinject.training.pit): QA-SFT's pairs, then paraphrase set k's texts, in one run; and both shuffled together
register(Method(
    name="pit", label="PIT", prefix="pit", whole_model=True, folder="pit/", suffix="_pit",
    lr=lambda config: config["finetune"]["pit"]["lr"],
    search_lrs=lambda config: list(config["finetune"]["pit"].get("search_lr", [])), search_key="finetune.pit.search_lr",
    options=partial(pit.options, "pit"), train=pit.TRAIN, data_option=pit.OPTIONS["pit"], read=pit.read_rows,
    examples=pit.examples, batching=partial(pit.batching, False), check=partial(pit.check, "pit"),
    tokens=pit.training_tokens, qa_pairs=True))


register(Method(
    name="pit_mixed", label="PIT-mix", prefix="pitmix", whole_model=True, folder="pit_mixed/", suffix="_pit_mixed",
    lr=lambda config: config["finetune"]["pit_mixed"]["lr"],
    search_lrs=lambda config: list(config["finetune"]["pit_mixed"].get("search_lr", [])),
    search_key="finetune.pit_mixed.search_lr", options=partial(pit.options, "pit_mixed"), train=pit.TRAIN,
    data_option=pit.OPTIONS["pit_mixed"], read=pit.read_rows, examples=pit.examples,
    batching=partial(pit.batching, True), check=partial(pit.check, "pit_mixed"), tokens=pit.training_tokens,
    qa_pairs=True))


# Synthetic CPT (kinject.training.synthetic): the chunks and k tokens of EntiGraph-style synthetic text, k a budget of
# synthetic.tokens; its data rule synthetic_set counts the tokens with the model's own tokenizer
register(Method(
    name="synthetic", label="SynCPT", prefix="syn", whole_model=True, folder="synthetic/", suffix="_synthetic",
    lr=lambda config: config["finetune"]["synthetic"]["lr"],
    search_lrs=lambda config: list(config["finetune"]["synthetic"].get("search_lr", [])),
    search_key="finetune.synthetic.search_lr", options=lambda config: {}, train=synthetic.TRAIN, sets=synthetic.sets,
    search_set=synthetic.search_set, unit=synthetic.UNIT, trend_per=1000, check=synthetic.check,
    tokens=synthetic.training_tokens))


register(Method(
    name="steps", label="FT-steps", prefix="steps", whole_model=True, folder="steps/", suffix="_steps",
    lr=lambda config: METHODS["full"].lr(config), search_lrs=lambda config: [], search_key=matched.SETS_KEY,
    options=lambda config: {}, matches="full", sets_key=matched.SETS_KEY))
