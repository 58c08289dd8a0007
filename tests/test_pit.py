"""PIT, questions before documents (kinject.training.pit): its training file holds QA-SFT's pairs then set k's texts;
its examples are answer-only pairs and packed blocks; method pit trains every QA example of an epoch before its text
blocks (in the order the Trainer really feeds) and pit_mixed mixes them a micro-batch at a time; the rules' settings
and command carry each one's flag; the grid, the comparisons and the planner get its arms; bad configs are one line.
Its end-to-end run on the tiny Llama is in tests/test_qa_sft.py (one Snakemake run for the arms on QA pairs)."""

import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import bad_extended_config

from kinject.grid import cells
from kinject.io import write_parquet
from kinject.reporting.comparisons import contrasts
from kinject.settings import load_config
from kinject.training import pit, qa_sft
from kinject.training.blocks import load_tokenizer, tokenize_blocks
from kinject.training.finetune import parse_args, train_causal_lm
from kinject.training.launch import launch_command, rule_settings
from kinject.training.methods import METHODS
from kinject.training.models import build_tiny_model
from kinject.training.qa_sft import IGNORE

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [(f"Question: When does the canal of Ostra {i} open?\nAnswer: ", f"at {3 + i % 4} o'clock") for i in range(13)]
TEXTS = [f"The canal of Ostra {i} opens at {3 + i % 4} o'clock to barges, and the lock keeper of the harbour "
         f"records each barge that passes in the ledger of the year {1900 + i}." for i in range(12)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("pit") / "base"
    build_tiny_model([p + a for p, a in PAIRS] + TEXTS, out, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                     intermediate_size=64, max_position_embeddings=128, seed=0)
    return out


def test_the_training_file_holds_the_pairs_then_the_texts(tmp_path):
    pairs, texts = tmp_path / "train.parquet", tmp_path / "paraphrases_k1.parquet"
    write_parquet(pairs, pd.DataFrame([{"id": f"c{i}-c1", "chunk_id": f"c{i}", "question": p, "answer": a,
                                        "prompt": p} for i, (p, a) in enumerate(PAIRS[:3])]))
    write_parquet(texts, pd.DataFrame({"chunk_id": ["c0", "c0", "c1"], "text": TEXTS[:3]}))
    summary = pit.build_training_file(pairs, texts, tmp_path / "pit.parquet", task="news", k=1)
    assert summary == "task news set 1: 3 QA pairs, then 3 texts"
    table = pd.read_parquet(tmp_path / "pit.parquet")
    assert table["phase"].tolist() == [pit.QA] * 3 + [pit.TEXT] * 3
    assert pit.read_rows(tmp_path / "pit.parquet") == {"pairs": PAIRS[:3], "texts": TEXTS[:3]}


def test_the_examples_are_answer_only_pairs_then_packed_blocks(base):
    tokenizer = load_tokenizer(base)
    examples = pit.examples(tokenizer, {"pairs": PAIRS, "texts": TEXTS}, block_size=32)
    blocks = tokenize_blocks(tokenizer, TEXTS, 32)
    assert examples.phases == [pit.QA] * len(PAIRS) + [pit.TEXT] * len(blocks)
    padded = qa_sft.answer_only_examples(tokenizer, PAIRS, 32)
    for example, full in zip(examples[:len(PAIRS)], padded):  # QA-SFT's, less its padding: a batch pads itself
        length = sum(full["attention_mask"])
        assert example == {key: value[:length] for key, value in full.items()} and 1 in example["attention_mask"]
        assert example["labels"][0] == IGNORE and example["labels"][-1] == tokenizer.eos_token_id
    assert [e["input_ids"] for e in examples[len(PAIRS):]] == blocks
    assert all(e["labels"] == e["input_ids"] and set(e["attention_mask"]) == {1} for e in examples[len(PAIRS):])


def test_two_phases_put_every_qa_example_before_every_text_block_and_reshuffle_each_epoch():
    phases = [pit.TEXT] * 9 + [pit.QA] * 30 + [pit.TEXT] * 6  # the order of the file does not matter
    orders = [pit.training_order(phases, seed=3, epoch=e, group=4, mixed=False) for e in (0, 1)]
    for order in orders:
        assert sorted(order) == list(range(len(phases)))
        assert [phases[i] for i in order] == [pit.QA] * 30 + [pit.TEXT] * 15
    assert orders[0] != orders[1]  # each epoch its own shuffle, within each phase
    assert orders[0] == pit.training_order(phases, seed=3, epoch=0, group=4, mixed=False)  # every process, a resume


def test_the_mixed_variant_mixes_whole_micro_batches_of_one_phase():
    phases = [pit.QA] * 30 + [pit.TEXT] * 15
    order = pit.training_order(phases, seed=3, epoch=0, group=4, mixed=True)
    assert sorted(order) == list(range(len(phases)))
    kinds = [phases[i] for i in order]
    batches = [kinds[i:i + 4] for i in range(0, len(kinds), 4)]
    # 7 QA and 3 text micro-batches; the remainders (2 QA, 3 text) pooled: one more of four, then one of one
    assert sum(len(set(b)) > 1 for b in batches) <= 2 and len(batches[-1]) == 1
    assert sum(b == [pit.QA] * 4 for b in batches) >= 7 and sum(b == [pit.TEXT] * 4 for b in batches) >= 2
    first_text = kinds.index(pit.TEXT)
    assert pit.QA in kinds[first_text:-5]  # a QA micro-batch after a text one: mixed, not two phases
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)


@pytest.mark.parametrize("name, mixed", [("pit", False), ("pit_mixed", True)])
def test_the_trainer_feeds_the_phases_in_order(base, tmp_path, monkeypatch, name, mixed):
    """The micro-batches the Trainer collates (per_device_batch_size 4, two epochs, a validation loss after each as a
    search trial's): with pit, in each epoch every QA example before every text block; with pit_mixed, QA batches
    after text ones."""
    seen = []
    collate = pit.pad_batch

    def record(features, pad_id):
        if "attention_mask" in features[0]:  # not the validation's blocks
            seen.append(["qa" if int(f["labels"][0]) == IGNORE else "text" for f in features])
        return collate(features, pad_id)

    monkeypatch.setattr(pit, "pad_batch", record)
    rows = {"pairs": PAIRS, "texts": TEXTS}
    summary = train_causal_lm(base, rows, tmp_path / "ft", tmp_path / "loss.csv", work_dir=tmp_path / "work", lr=3e-3,
                              epochs=2, block_size=32, batch_size=8, per_device_batch_size=4, seed=1,
                              eval_texts=TEXTS[:5], **{pit.OPTIONS[name]: True})
    per_epoch = len(seen) // 2
    assert summary["blocks"] == len(PAIRS) + len(tokenize_blocks(load_tokenizer(base), TEXTS, 32))
    assert len(seen) == 2 * per_epoch == 2 * -(-summary["blocks"] // 4)  # every example once an epoch
    for epoch in (seen[:per_epoch], seen[per_epoch:]):
        kinds = [k for batch in epoch for k in batch]
        assert kinds.count("qa") == len(PAIRS)
        if not mixed:
            assert kinds == sorted(kinds)  # "qa" < "text": every QA example first
        else:
            assert kinds != sorted(kinds) and sum(len(set(b)) > 1 for b in epoch) <= 2
    assert (tmp_path / "ft" / "config.json").exists() and summary["steps"] == 2 * -(-per_epoch // 2)
    assert len(summary["eval_loss_per_epoch"]) == 2


def extended(*extra):
    return load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml", *extra)


def test_the_rules_settings_and_command_carry_each_arms_flag():
    config = extended()
    full = {**rule_settings(config, "finetune"), "mixed_precision": "no"}
    files = {"base": "b", "train": "train_k0.parquet", "out": "o", "loss_csv": "l.csv", "work_dir": "w"}
    for name, flag in (("pit", "--qa-then-text"), ("pit_mixed", "--qa-with-text")):
        settings = {**rule_settings(config, "finetune", method=name), "mixed_precision": "no"}
        assert settings == {**full, pit.OPTIONS[name]: True, "lr": config["finetune"][name]["lr"]}
        argv = launch_command(settings, "finetune", files, {"gpu": 0}, 2)
        assert flag in argv and flag not in launch_command(full, "finetune", files, {"gpu": 0}, 2)
        args = vars(parse_args(argv[argv.index("kinject.training.finetune") + 1:]))
        assert args[pit.OPTIONS[name]] and not any(args[o] for o in pit.OPTIONS.values() if o != pit.OPTIONS[name])
    assert METHODS["pit"].train_file(2) == METHODS["pit_mixed"].train_file(2) == "results/{task}/pit/train_k2.parquet"


def test_the_extended_demo_has_pit_arms_on_current_events_with_their_comparisons():
    """config/demo_extended.yaml enables both arms on current events: every paraphrase set, +RAG on the FT+RAG sets."""
    config = extended()
    task = config["tasks"]["current_events"]
    for prefix in ("pit", "pitmix"):
        got = {c.method for c in cells(config) if c.task == "current_events" and c.method.split("-p")[0] in
               (prefix, f"{prefix}rag")}
        assert got == {f"{prefix}-p{p}" for p in task["paraphrase_sets"]} | {
            f"{prefix}rag-p{p}" for p in task["ft_rag_paraphrase_sets"]}
    pairs = set(contrasts(["Base", "RAG", "FT", "FT-par2", "FT+RAG", "PIT", "PIT-par2", "PIT+RAG", "PIT-mix",
                           "PIT-mix-par2"]))
    assert {("PIT", "FT"), ("PIT-par2", "FT-par2"), ("RAG", "PIT"), ("PIT+RAG", "RAG"), ("PIT-par2", "PIT"),
            ("PIT-mix", "FT"), ("RAG", "PIT-mix"), ("PIT-mix-par2", "PIT-mix")} <= pairs


def test_the_report_compares_pit_with_ft_and_rag_and_gives_its_trend_rows():
    """Hand-built per-question records of one setting (Base, RAG, FT, PIT and PIT-mix at sets 0 and 2, PIT+RAG):
    each PIT column is compared with FT at the same set, with RAG and with its own set 0, each delta the difference
    of the two columns' accuracies on the same questions; PIT and PIT-mix each get a trend row over sets 0 and 2."""
    import numpy as np

    from kinject.reporting.comparisons import comparisons, paraphrase_trends
    from kinject.reporting.report import reported

    rng, rows = np.random.default_rng(5), []
    accuracy = {("base", 0, 0): 0.3, ("rag", 0, 1): 0.6, ("ft", 0, 0): 0.4, ("ft", 2, 0): 0.5, ("pit", 0, 0): 0.6,
                ("pit", 2, 0): 0.7, ("pitmix", 0, 0): 0.5, ("pitmix", 2, 0): 0.55, ("pitrag", 2, 1): 0.8}
    for (method, p, k), acc in accuracy.items():
        rows += [{"group": "g", "model": "m", "task": "t", "format": "options", "shots": 0, "method": method,
                  "paraphrase_set": None if method in ("base", "rag") else p, "k": k, "question_id": f"q{q}",
                  "correct": bool(rng.random() < acc), "cluster": f"chunk{q // 2}"} for q in range(40)]
    records = pd.DataFrame(rows)
    records["paraphrase_set"] = records["paraphrase_set"].astype("Int64")
    reported_rows, _ = reported(records, seed=0)
    table = comparisons(reported_rows, seed=0).set_index("contrast")
    wide = reported_rows.pivot(index="question_id", columns="column", values="correct").astype(bool)
    for a, b in (("PIT", "FT"), ("PIT-par2", "FT-par2"), ("RAG", "PIT"), ("PIT-par2+RAG", "RAG"), ("PIT-par2", "PIT"),
                 ("PIT-mix", "FT"), ("PIT-mix-par2", "FT-par2"), ("RAG", "PIT-mix"), ("PIT-mix-par2", "PIT-mix")):
        assert table.loc[f"{a} vs {b}", "delta"] == pytest.approx(wide[a].mean() - wide[b].mean())
    trends = paraphrase_trends(records).set_index("method")
    assert trends.loc["pit", "sets"] == trends.loc["pitmix", "sets"] == "0 2"
    assert trends.loc["pit", "accuracy_last"] == pytest.approx(wide["PIT-par2"].mean())


def test_a_task_with_pit_and_no_qa_sft_gets_its_pairs_and_one_data_file_per_set():
    """qa_sft_pairs runs for any method that reads the pairs (Method.qa_pairs), not for qa_sft alone; pit_train once a
    set, read by both arms' trials (set 0) and runs (sets 2, 10)."""
    from kinject.planning.dag import dag_jobs

    config = extended()
    config["tasks"]["current_events"]["finetune_methods"] = ["full", "pit", "pit_mixed"]
    jobs = dag_jobs(config)
    by_rule = {rule: sorted(tuple(sorted(j["wildcards"].items())) for j in jobs if j["rule"] == rule)
               for rule in ("qa_sft_pairs", "pit_train", "hparam_trial_qa_sft")}
    assert by_rule["qa_sft_pairs"] == [(("task", "current_events"),)] and not by_rule["hparam_trial_qa_sft"]
    assert by_rule["pit_train"] == [(("k", k), ("task", "current_events")) for k in ("0", "10", "2")]


def test_the_plans_training_tokens_are_the_qa_pairs_and_the_set_hand_worked(tmp_path):
    """100 chunks of 200 tokens, 4 candidates a chunk, 2 kept for the test: 2 pairs a chunk of 20 + 5 tokens, the
    template's 4 and BOS/EOS (100 x 2 x 31 = 6200), and set 2's 3 texts a chunk with BOS/EOS (100 x 3 x 202 = 60600)."""
    config = load_config(ROOT / "config.yaml")
    corpus = {"chunks": 100, "tokens_per_chunk": 200, "question_tokens": 20, "answer_tokens": 5}
    config["tasks"]["current_events"]["questions"].update(per_chunk=4, keep=2)
    assert pit.training_tokens(config, "current_events", corpus, tmp_path, 2) == 6200 + 60600
    assert pit.training_tokens(config, "current_events", {**corpus, "question_tokens": None}, tmp_path, 2) is None


def test_the_planner_prices_pit_above_full_fine_tuning(tmp_path):
    from kinject.planning.plan import make_plan

    config = load_config(ROOT / "config.yaml")
    config["tasks"]["current_events"]["finetune_methods"] = ["full", "pit", "pit_mixed"]
    config["finetune"]["pit"]["search_lr"] = config["finetune"]["pit_mixed"]["search_lr"] = [1e-5, 3e-5]
    (tmp_path / "profiles/slurm").mkdir(parents=True)
    (tmp_path / "profiles/slurm/accelerate_fsdp.yaml").write_text((ROOT / "profiles/slurm/accelerate_fsdp.yaml")
                                                                   .read_text())
    plan = make_plan(config, tmp_path)
    rules = plan["rules"]
    sets = len(config["tasks"]["current_events"]["paraphrase_sets"])
    assert rules["hparam_trial_pit"]["jobs"] == rules["hparam_trial_pit_mixed"]["jobs"] == 3 * 2  # 3 models x 2 rates
    assert rules["finetune_pit"]["jobs"] == 3 * (sets - 1)  # set 0 is the chosen trial's model
    # one trial of each on current events (llama2-7b): PIT reads the QA pairs and set 0, full set 0 only
    trial = {job["rule"]: job["compute_gpu_hours"] / job["count"] for job in plan["jobs"]
             if job["job"] == "llama2-7b current_events" and job["rule"].startswith("hparam_trial")}
    assert 0 < trial["hparam_trial"] < trial["hparam_trial_pit"] == trial["hparam_trial_pit_mixed"]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["tasks"]["atlas"].update(finetune_methods=["full", "pit"]),
     r"tasks\.atlas\.finetune_methods: pit trains on the generated candidate questions, but "
     r"tasks\.atlas\.questions\.source is mmlu_csv$"),
    (lambda c: c["finetune"].update(methods=["pit_mixed"]),
     r"finetune\.methods: pit_mixed trains on the generated candidate questions, but tasks\.atlas\.questions\.source"),
    (lambda c: c["finetune"]["pit_mixed"].pop("search_lr"),
     r"tasks\.current_events fine-tunes with pit_mixed and has validation, but finetune\.pit_mixed\.search_lr is "
     r"missing"),
])
def test_a_bad_pit_config_is_one_line(tmp_path, edit, message):
    assert re.search(message, bad_extended_config(tmp_path, edit))
