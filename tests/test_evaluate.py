"""lm-eval tasks written as data, run through lm-evaluation-harness on a tiny random Llama built here."""

import json
import shutil

import pandas as pd
import pytest
import yaml

from kinject.errors import KinjectError
from kinject.evaluation.evaluate import Run, run_lmeval, write_lmeval_task

pytestmark = pytest.mark.usefixtures("hf_offline")

# Every correct option is one short word, every wrong one a long sentence: a model that scores the
# option TEXTS by summed log-likelihood (lm-eval's acc) picks the short one even with random weights.
LONG = [
    "the fox's \"quick\" jump over the lazy dog near the old river bank, {{ not a template }}",
    "water boils at one hundred degrees celsius at sea level on most days",
    "mars is the fourth planet from the sun and has two small moons",
]
CHUNKS = [f"Chunk {i} says the secret number of topic {i} is {i * 7}." for i in range(6)]


def _question(qid, split, i):
    answer = i % 4
    choices = LONG[: answer] + ["yes"] + LONG[answer:]
    return {"id": qid, "question": f"What is the secret number of topic {i}?", "choices": choices,
            "answer": answer, "split": split, "chunk_id": f"c{i}"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(LONG + CHUNKS + ["Question: what is it? Answer: yes"], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def data(tmp_path):
    rows = [_question(f"t{i}", "test", i) for i in range(6)] + [_question(f"d{i}", "dev", i) for i in range(5)]
    questions = tmp_path / "questions.parquet"
    pd.DataFrame(rows).to_parquet(questions)
    chunks = tmp_path / "chunks.parquet"
    pd.DataFrame({"chunk_id": [f"c{i}" for i in range(6)], "title": "t", "text": CHUNKS,
                  "n_words": 10}).to_parquet(chunks)
    retrieved = tmp_path / "retrieved.parquet"  # rank 0 = the question's own chunk, rank 1 = the next one
    pd.DataFrame([{"question_id": r["id"], "rank": rank, "chunk_id": f"c{(int(r['id'][1:]) + rank) % 6}",
                   "score": 1.0 - rank / 10} for r in rows for rank in (0, 1)]).to_parquet(retrieved)
    return questions, chunks, retrieved


def _docs(path):
    return {d["id"]: d for d in map(json.loads, path.read_text().splitlines())}


def test_task_files(data, tmp_path):
    questions, chunks, retrieved = data
    k0 = write_lmeval_task(questions, tmp_path / "k0", "kin_k0")
    k2 = write_lmeval_task(questions, tmp_path / "k2", "kin_k2", k=2, retrieved_parquet=retrieved,
                           chunks_parquet=chunks, fewshot_context="every_example")
    assert {p.name for p in k0.iterdir()} == {"test.jsonl", "dev.jsonl", "kin_k0.yaml"}
    assert all(d["context"] == "" for d in _docs(k0 / "test.jsonl").values())
    test, dev = _docs(k2 / "test.jsonl"), _docs(k2 / "dev.jsonl")
    assert len(test) == 6 and len(dev) == 5
    assert test["t5"]["context"] == CHUNKS[5] + "\n\n" + CHUNKS[0]
    assert dev["d2"]["context"] == CHUNKS[2] + "\n\n" + CHUNKS[3]
    assert test["t1"]["choices"][1] == "yes" and test["t1"]["answer"] == 1
    config = yaml.safe_load((k2 / "kin_k2.yaml").read_text())
    assert config["task"] == "kin_k2" and config["fewshot_split"] == "dev"
    assert config["metadata"]["k"] == 2 and config["metadata"]["format"] == "options"
    assert config["dataset_kwargs"]["data_files"] == {"test": str(k2 / "test.jsonl"), "dev": str(k2 / "dev.jsonl")}


def test_lmeval_builds_the_prompt_from_the_task_data(data, tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    questions, chunks, retrieved = data
    task_dir = write_lmeval_task(questions, tmp_path / "k1", "kin_k1", k=1, retrieved_parquet=retrieved,
                                 chunks_parquet=chunks, fewshot_context="every_example")
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    task = TaskManager(include_path=str(task_dir), include_defaults=False).load(["kin_k1"])["tasks"]["kin_k1"]
    doc = task.test_docs()[3]
    question = "Question: What is the secret number of topic 3?\nAnswer:"
    assert task.doc_to_text(doc) == CHUNKS[3] + "\n\n" + question
    assert task.doc_to_choice(doc) == LONG + ["yes"] and task.doc_to_target(doc) == 3
    prompt = task.fewshot_context(doc, num_fewshot=2)
    assert prompt.endswith("\n\n" + CHUNKS[3] + "\n\n" + question) and prompt.count("Answer: yes\n\n") == 2
    assert sum(prompt.count(chunk) for chunk in CHUNKS) == 3  # every example brings its own chunk
    (context, continuation), *_ = [r.args for r in task.construct_requests(doc, prompt)]
    assert context == prompt and continuation == " " + LONG[0]


def load_task(task_dir, name, tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    return TaskManager(include_path=str(task_dir), include_defaults=False).load([name])["tasks"][name]


def test_fewshot_examples_carry_no_chunks_by_default(data, tmp_path, monkeypatch):
    """question_only: a K-chunk few-shot prompt holds K chunks, for the question asked, not K per example."""
    questions, chunks, retrieved = data
    task_dir = write_lmeval_task(questions, tmp_path / "k2", "kin_k2", k=2, retrieved_parquet=retrieved,
                                 chunks_parquet=chunks)
    assert all(d["context"] == "" for d in _docs(task_dir / "dev.jsonl").values())
    task = load_task(task_dir, "kin_k2", tmp_path, monkeypatch)
    prompt = task.fewshot_context(task.test_docs()[3], num_fewshot=5)
    assert prompt.count("Answer: yes\n\n") == 5 and sum(prompt.count(chunk) for chunk in CHUNKS) == 2
    assert prompt.endswith(CHUNKS[3] + "\n\n" + CHUNKS[4] + "\n\nQuestion: What is the secret number of topic 3?\nAnswer:")


def test_letters_format_is_lm_evals_stock_mmlu_prompt(data, tmp_path, monkeypatch):
    """The letters format builds, from the same questions, exactly the prompt of lm-eval's own MMLU task
    (lm_eval/tasks/mmlu/default, with its dataset swapped for our JSONL) and scores the letters."""
    from importlib import resources as importlib_resources

    questions, _, _ = data
    ours = write_lmeval_task(questions, tmp_path / "ours", "kin_letters", fmt="letters", subject="college_biology")
    stock = yaml.safe_load(importlib_resources.files("lm_eval").joinpath(
        "tasks/mmlu/default/_default_template_yaml").read_text())
    stock.update(task="stock_mmlu", dataset_path="json", dataset_kwargs={"data_files": {
        s: str(ours / f"{s}.jsonl") for s in ("test", "dev")}},
        description="The following are multiple choice questions (with answers) about college biology.\n\n")
    (tmp_path / "stock").mkdir()
    (tmp_path / "stock" / "stock_mmlu.yaml").write_text(yaml.safe_dump(stock))
    ours_task = load_task(ours, "kin_letters", tmp_path, monkeypatch)
    stock_task = load_task(tmp_path / "stock", "stock_mmlu", tmp_path, monkeypatch)
    for i in (0, 4):
        for shots in (0, 5):
            doc = ours_task.test_docs()[i]
            prompt = ours_task.fewshot_context(doc, num_fewshot=shots)
            assert prompt == stock_task.fewshot_context(stock_task.test_docs()[i], num_fewshot=shots)
            assert ours_task.doc_to_choice(doc) == ["A", "B", "C", "D"]
    assert prompt.startswith("The following are multiple choice questions (with answers) about college biology.")
    listed = "".join(f"{letter}. {choice}\n" for letter, choice in zip("ABCD", doc["choices"]))
    assert prompt.endswith("What is the secret number of topic 4?\n" + listed + "Answer:")


def test_no_dev_rows_means_no_fewshot_split(data, tmp_path):
    questions = tmp_path / "test_only.parquet"
    df = pd.read_parquet(data[0])
    df[df["split"] == "test"].to_parquet(questions)
    out = write_lmeval_task(questions, tmp_path / "task", "kin_test_only")
    config = yaml.safe_load((out / "kin_test_only.yaml").read_text())
    assert "fewshot_split" not in config and list(config["dataset_kwargs"]["data_files"]) == ["test"]
    assert not (out / "dev.jsonl").exists()
    with pytest.raises(KinjectError, match="kin_test_only.yaml: 1-shot evaluation needs 1 dev questions; .* has 0"):
        run_lmeval("unused", [Run(out, "kin_test_only", tmp_path / "score.json")], shots=1)


def test_lmeval_runs_zero_and_few_shot_with_context(tiny_model, data, tmp_path, monkeypatch):
    questions, chunks, retrieved = data
    k0 = write_lmeval_task(questions, tmp_path / "k0", "kin_k0")
    [scores] = run_lmeval(tiny_model, [Run(k0, "kin_k0", tmp_path / "scores" / "k0.json",
                                           meta={"model": "tiny", "method": "base"})], shots=0)
    assert json.loads((tmp_path / "scores" / "k0.json").read_text()) == scores
    assert scores["n_questions"] == 6 and scores["shots"] == 0 and scores["k"] == 0
    assert scores["model"] == "tiny" and scores["lm_eval_version"] == "0.4.13"
    assert scores["accuracy"] == 1.0  # option texts scored by log-likelihood: the short one wins
    assert 0 <= scores["accuracy_norm"] <= 1 and scores["accuracy_stderr"] == 0

    k1 = write_lmeval_task(questions, tmp_path / "k1", "kin_k1", k=1, retrieved_parquet=retrieved,
                           chunks_parquet=chunks)
    monkeypatch.chdir(tmp_path / "scores")  # the task's data paths do not depend on the working directory
    [scores] = run_lmeval(tiny_model, [Run(k1, "kin_k1", tmp_path / "scores" / "k1.json")], shots=2, seed=7)
    assert scores["n_questions"] == 6 and scores["shots"] == 2 and scores["k"] == 1
    assert scores["accuracy"] == 1.0  # context and examples before it, the one-token option still wins
    assert scores["scorer"] == "kinject-hf" and scores["precision"] == "fp32" and scores["n_truncated"] == 0
    assert _docs(k1 / "test.jsonl")["t3"]["context"] == CHUNKS[3]


def test_one_call_scores_several_tasks_as_separate_calls_do(tiny_model, data, tmp_path):
    """One job scores base and every RAG K with one model load; each score equals its own lm-eval run."""
    questions, chunks, retrieved = data
    runs = [Run(write_lmeval_task(questions, tmp_path / f"k{k}", f"kin_k{k}", k=k, retrieved_parquet=retrieved,
                                  chunks_parquet=chunks), f"kin_k{k}", tmp_path / "together" / f"k{k}.json",
                meta={"method": "rag" if k else "base"})
            for k in (0, 1, 2)]
    together = run_lmeval(tiny_model, runs, shots=1, seed=3)
    alone = [run_lmeval(tiny_model, [Run(r.task_dir, r.task_name, tmp_path / "alone" / f"{r.task_name}.json",
                                         r.meta)], shots=1, seed=3)[0] for r in runs]
    assert [s["k"] for s in together] == [0, 1, 2] and [s["method"] for s in together] == ["base", "rag", "rag"]
    for t, a in zip(together, alone):
        assert t["n_questions"] == a["n_questions"] == 6
        assert t["accuracy"] == a["accuracy"] and abs(t["accuracy_norm"] - a["accuracy_norm"]) < 1e-9
    assert [json.loads((tmp_path / "together" / f"k{k}.json").read_text()) for k in (0, 1, 2)] == together


def test_a_bad_task_fails_before_any_score_is_written(data, tmp_path):
    good = write_lmeval_task(data[0], tmp_path / "good", "kin_good")
    bad = write_lmeval_task(data[0], tmp_path / "bad", "kin_bad")
    (bad / "test.jsonl").unlink()
    with pytest.raises(KinjectError, match="kin_bad.yaml: data file .*bad/test.jsonl not found"):
        run_lmeval("unused", [Run(good, "kin_good", tmp_path / "good.json"), Run(bad, "kin_bad", tmp_path / "bad.json")])
    assert not (tmp_path / "good.json").exists()


def test_out_of_range_answer_is_refused_before_lmeval(data, tmp_path):
    questions = tmp_path / "bad.parquet"
    df = pd.read_parquet(data[0])
    df.loc[3, "answer"] = 4
    df.to_parquet(questions)
    with pytest.raises(KinjectError, match=r"bad.parquet: question 't3' has a missing or out-of-range answer"):
        write_lmeval_task(questions, tmp_path / "task", "kin_bad")
    assert not (tmp_path / "task").exists()


def test_missing_retrieval_is_refused(data, tmp_path):
    questions, chunks, retrieved = data
    partial = tmp_path / "partial.parquet"
    hits = pd.read_parquet(retrieved)
    hits[hits["question_id"] != "d4"].to_parquet(partial)
    with pytest.raises(KinjectError, match="partial.parquet: question 'd4' has 0 retrieved chunk"):
        write_lmeval_task(questions, tmp_path / "task", "kin", k=1, retrieved_parquet=partial, chunks_parquet=chunks)
    with pytest.raises(KinjectError, match="questions.parquet: k=1 needs the retrieved chunks"):
        write_lmeval_task(questions, tmp_path / "task", "kin", k=1)


def test_moved_task_folder_is_refused(data, tmp_path):
    task = write_lmeval_task(data[0], tmp_path / "task", "kin")
    shutil.move(task, tmp_path / "moved")
    with pytest.raises(KinjectError, match="kin.yaml: data file .*task/test.jsonl not found"):
        run_lmeval("unused", [Run(tmp_path / "moved", "kin", tmp_path / "score.json")])


def _long_context_task(data, tmp_path, name="kin_long"):
    """Questions t0 and t1 get a retrieved chunk of about 2,000 tokens (over the tiny model's 512); t2-t5 short."""
    questions, chunks, retrieved = data
    texts = pd.read_parquet(chunks)
    texts.loc[texts["chunk_id"].isin(["c0", "c1"]), "text"] = " ".join(["Chunk 0 says the secret number."] * 300)
    long_chunks = tmp_path / "long_chunks.parquet"
    texts.to_parquet(long_chunks)
    return write_lmeval_task(questions, tmp_path / name, name, k=1, retrieved_parquet=retrieved,
                             chunks_parquet=long_chunks)


def _no_scoring(monkeypatch):
    """Scoring any request (either path) fails the test: the truncation check must come first."""
    from lm_eval.models.huggingface import HFLM

    from kinject.evaluation.shared_prefix import SharedPrefixHFLM

    def scored(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr(SharedPrefixHFLM, "_shared_prefix_tokens", scored)
    monkeypatch.setattr(HFLM, "_loglikelihood_tokens", scored)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_prompts_longer_than_max_length_stop_the_job_before_scoring(tiny_model, data, tmp_path, monkeypatch,
                                                                    shared_prefix):
    task = _long_context_task(data, tmp_path)
    _no_scoring(monkeypatch)
    with pytest.raises(KinjectError, match=r"kin_long/kin_long\.yaml: 2 of 6 prompts are longer than the model's "
                                           r"max_length of 512 tokens \(longest \d+\) and would be cut from the left; "
                                           r"evaluation.max_truncated_fraction allows 0$"):
        run_lmeval(tiny_model, [Run(task, "kin_long", tmp_path / "long.json")], shared_prefix=shared_prefix)
    assert not (tmp_path / "long.json").exists()


def test_truncated_prompts_are_counted_in_the_score_file(tiny_model, data, tmp_path):
    """Within max_truncated_fraction the job scores, and both scorers count the same 2 of 6 cut prompts
    (the question's context + option longer than 512 tokens of the model's own tokenizer)."""
    from transformers import AutoTokenizer

    task = _long_context_task(data, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    docs = [json.loads(line) for line in (task / "test.jsonl").read_text().splitlines()]
    too_long = {d["id"] for d in docs for c in d["choices"]
                if len(tokenizer(f"{d['context']}\n\nQuestion: {d['question']}\nAnswer: {c}").input_ids) > 513}
    assert too_long == {"t0", "t1"}
    scores = [run_lmeval(tiny_model, [Run(task, "kin_long", tmp_path / f"{shared}.json")], shared_prefix=shared,
                         max_truncated_fraction=0.5)[0] for shared in (True, False)]
    assert [(s["scorer"], s["n_truncated"], s["n_questions"], s["max_length"]) for s in scores] == [
        ("kinject-hf", 2, 6, 512), ("hf", 2, 6, 512)]
    assert scores[0]["max_prompt_tokens"] == scores[1]["max_prompt_tokens"] > 1000
    assert scores[0]["accuracy"] == scores[1]["accuracy"]


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_every_answer_reaches_lm_evals_cache_hook(tiny_model, data, tmp_path, monkeypatch, shared_prefix):
    """lm-eval's request cache (CachingLM) is filled through the model's cache hook: both scorers hand it
    every (context, continuation) with the answer they return."""
    from lm_eval.tasks import TaskManager

    from kinject.evaluation.evaluate import lmeval_environment, load_lm

    questions, chunks, retrieved = data
    task_dir = write_lmeval_task(questions, tmp_path / "k1", "kin_k1", k=1, retrieved_parquet=retrieved,
                                 chunks_parquet=chunks)
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    task = TaskManager(include_path=str(task_dir), include_defaults=False).load(["kin_k1"])["tasks"]["kin_k1"]
    task.build_all_requests(rank=0, world_size=1)
    with lmeval_environment(tiny_model):
        lm = load_lm(tiny_model, device="cpu", shared_prefix=shared_prefix)
    seen = {}
    lm.set_cache_hook(type("Hook", (), {"add_partial": lambda self, attr, req, res: seen.update({(attr, req): res})})())
    answers = lm.loglikelihood(task.instances)
    assert len(answers) == len(task.instances) == 24
    assert seen == {("loglikelihood", r.args): a for r, a in zip(task.instances, answers)}


def test_per_question_records_give_the_score_files_accuracy(tiny_model, data, tmp_path):
    """Every score file has its records beside it: one row per test question, each option's log-likelihood,
    the chosen option the one of highest log-likelihood, and the score's accuracy their mean."""
    questions, chunks, retrieved = data
    k1 = write_lmeval_task(questions, tmp_path / "k1", "kin_k1", k=1, retrieved_parquet=retrieved, chunks_parquet=chunks)
    [scores] = run_lmeval(tiny_model, [Run(k1, "kin_k1", tmp_path / "scores" / "rag_k1.json")], shots=1, seed=3)
    records = pd.read_parquet(tmp_path / "scores" / "rag_k1.parquet")
    assert sorted(records["question_id"]) == [f"t{i}" for i in range(6)]
    assert records["gold"].tolist() == [int(q[1:]) % 4 for q in records["question_id"]]
    assert all(len(ll) == 4 and c == max(range(4), key=lambda i: ll[i])
               for ll, c in zip(records["loglik"], records["chosen"]))
    assert records["correct"].tolist() == (records["chosen"] == records["gold"]).tolist()
    assert scores["accuracy"] == records["correct"].mean() and scores["n_correct"] == records["correct"].sum()
    lo, hi = scores["accuracy_ci95_wilson"]
    assert lo < scores["accuracy"] <= hi <= 1
