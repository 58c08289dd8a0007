import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.llm import LLMClient, ResponseCache
from kinject.paraphrases import paraphrase_chunks, paraphrase_set, validation_paraphrases
from kinject.questions import (apply_review, generate_questions, load_mmlu_questions, mmlu_from_csv, read_questions,
                               select_questions, write_questions)


def write_mmlu(root, subject, rows, split="test"):
    path = root / "data" / split / f"{subject}_{split}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False)
    return path


def test_mmlu_csv_layout(tmp_path):
    write_mmlu(tmp_path, "atlas", [["Q1?", "a", "b", "c", "d", "C"], ["Q2?", "e", "f", "g", "h", "A"]])
    write_mmlu(tmp_path, "atlas", [["D1?", "a", "b", "c", "d", "B"]], split="dev")
    df = mmlu_from_csv(tmp_path, "atlas")
    assert df["answer"].tolist() == [2, 0, 1] and df["split"].tolist() == ["test", "test", "dev"]
    assert list(df.loc[0, "choices"]) == ["a", "b", "c", "d"]


def test_mmlu_csv_bad_answer_names_file_and_row(tmp_path):
    path = write_mmlu(tmp_path, "atlas", [["Q1?", "a", "b", "c", "d", "C"], ["Q2?", "e", "f", "g", "h", ""]])
    with pytest.raises(KinjectError, match=rf"{path}: row 2: answer '' is not one of A, B, C, D"):
        mmlu_from_csv(tmp_path, "atlas")


def questions_frame(**over):
    rows = [{"id": "a", "question": "Q?", "choices": ["x", "y"], "answer": 1, "split": "test", "chunk_id": None},
            {"id": "b", "question": "R?", "choices": ["x", "y"], "answer": 0, "split": "test", "chunk_id": None}]
    rows[1].update(over)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("over, message", [
    ({"id": "a"}, "duplicate question id 'a'"),
    ({"answer": None}, "missing or out-of-range answer"),
    ({"answer": 5}, "missing or out-of-range answer"),
    ({"question": " "}, "has no text"),
])
def test_bad_question_files(tmp_path, over, message):
    path = tmp_path / "questions.parquet"
    questions_frame(**over).to_parquet(path)
    with pytest.raises(KinjectError, match=message):
        read_questions(path)
    with pytest.raises(KinjectError, match=message):
        write_questions(tmp_path / "out.parquet", questions_frame(**over))
    assert not (tmp_path / "out.parquet").exists()


def test_review_file_rejects_and_validates(tmp_path):
    selected = tmp_path / "selected.parquet"
    write_questions(selected, questions_frame())
    review = tmp_path / "review.csv"
    review.write_text("id,decision\nb,reject\n")
    out = tmp_path / "questions.parquet"
    apply_review(selected, review, out)
    assert read_questions(out)["id"].tolist() == ["a"]
    review.write_text("id,decision\nzz,reject\n")
    with pytest.raises(KinjectError, match="unknown question id 'zz'"):
        apply_review(selected, review, out)
    review.write_text("id,decision\na,maybe\n")
    with pytest.raises(KinjectError, match="'maybe' for 'a' is not accept or reject"):
        apply_review(selected, review, out)
    assert read_questions(out)["id"].tolist() == ["a"]  # the built artifact survived both errors


def test_review_is_required_unless_skipped(tmp_path, caplog):
    selected = tmp_path / "selected.parquet"
    write_questions(selected, questions_frame())
    out = tmp_path / "questions.parquet"
    with pytest.raises(KinjectError, match=r"review\.csv: the human review file does not exist.*questions.review: skip"):
        apply_review(selected, tmp_path / "review.csv", out)
    assert not out.exists()
    apply_review(selected, "skip", out)
    assert read_questions(out)["id"].tolist() == ["a", "b"]
    review = tmp_path / "review.csv"
    review.write_text("id,decision\na,accept\n")
    caplog.set_level("INFO")
    apply_review(selected, review, out)
    assert "review: 1 accepted, 0 rejected, 1 unreviewed (kept) of 2 questions" in caplog.text


def test_question_target_is_a_seeded_sample_after_review(tmp_path):
    rows = [{"id": f"q{i}", "question": f"Q{i}?", "choices": ["x", "y"], "answer": 0, "split": "test",
             "chunk_id": f"{i}-0"} for i in range(40)]
    selected = tmp_path / "selected.parquet"
    write_questions(selected, pd.DataFrame(rows))
    review = tmp_path / "review.csv"
    review.write_text("id,decision\n" + "".join(f"q{i},reject\n" for i in range(10)))
    kept = []
    for seed in (1, 1, 2):
        apply_review(selected, review, tmp_path / "q.parquet", target=25, seed=seed)
        kept.append(read_questions(tmp_path / "q.parquet")["id"].tolist())
    assert kept[0] == kept[1] != kept[2] and len(kept[0]) == 25
    assert not {f"q{i}" for i in range(10)} & set(kept[0])  # sampled from what the review kept
    assert kept[0] == sorted(kept[0], key=lambda q: int(q[1:]))  # in their original order
    with pytest.raises(KinjectError, match="30 questions left after review, fewer than questions.target 31"):
        apply_review(selected, review, tmp_path / "q.parquet", target=31, seed=1)


def fake_llm(tmp_path):
    """An OpenAI-shaped backend answering our three prompts by their wording."""

    def backend(req):
        prompt, seed = req["messages"][-1]["content"], req["seed"]
        if prompt.startswith("Write 4"):
            qs = [{"question": f"Q{i} seed {seed}?", "choices": ["w", "x", "y", "z"], "answer": i % 4} for i in range(4)]
            return json.dumps({"questions": qs}), None
        if prompt.startswith("Below are"):
            return json.dumps({"keep": [3, 1]}), None
        n = int(prompt.split("Give ")[1].split(" ")[0])
        return json.dumps({"paraphrases": [f"para seed {seed} #{i}" for i in range(n)]}), None

    return LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=backend)


@pytest.fixture
def chunks(tmp_path):
    path = tmp_path / "chunks.parquet"
    pd.DataFrame({"chunk_id": ["1-0", "2-0", "3-0"], "title": ["A", "B", "C"],
                  "text": ["alpha text", "beta text", "gamma text"], "n_words": [2, 2, 2]}).to_parquet(path)
    return path


def test_generate_then_select(tmp_path, chunks):
    llm = fake_llm(tmp_path)
    generate_questions(chunks, tmp_path / "cand.parquet", tmp_path / "q1.jsonl", llm, per_chunk=4, seed=1)
    select_questions(tmp_path / "cand.parquet", tmp_path / "sel.parquet", tmp_path / "q2.jsonl", llm, keep=2, seed=1)
    sel = read_questions(tmp_path / "sel.parquet")
    assert len(sel) == 6 and sel["id"].tolist()[:2] == ["1-0-q0", "1-0-q1"]
    assert sel["question"].tolist()[:2] == ["Q3 seed 1?", "Q1 seed 1?"]  # the picked candidates, in the picked order
    assert (tmp_path / "q1.jsonl").read_text() == ""


def test_paraphrase_sets(tmp_path, chunks):
    llm = fake_llm(tmp_path)
    gen = tmp_path / "generated.parquet"
    paraphrase_chunks(chunks, gen, tmp_path / "q.jsonl", llm, count=5, per_call=2, seed=10)
    df = pd.read_parquet(gen)
    first = df[df["chunk_id"] == "1-0"]
    assert first["paraphrase"].tolist() == [1, 2, 3, 4, 5]
    # iteration i (2 per call) uses seed 10 + i
    assert first["text"].tolist() == ["para seed 10 #0", "para seed 10 #1", "para seed 11 #0", "para seed 11 #1",
                                      "para seed 12 #0"]
    paraphrase_set(chunks, None, tmp_path / "k0.parquet", k=0)
    paraphrase_set(chunks, gen, tmp_path / "k3.parquet", k=3)
    assert len(pd.read_parquet(tmp_path / "k0.parquet")) == 3
    k3 = pd.read_parquet(tmp_path / "k3.parquet")
    assert len(k3) == 3 * 4 and set(k3["paraphrase"]) == {0, 1, 2, 3}
    with pytest.raises(KinjectError, match="needs 6"):
        paraphrase_set(chunks, gen, tmp_path / "k6.parquet", k=6)


def test_validation_paraphrases_are_seeded_and_held_out(tmp_path, chunks):
    llm = fake_llm(tmp_path)
    validation_paraphrases(chunks, tmp_path / "v1.parquet", tmp_path / "q.jsonl", llm, n_chunks=2, per_chunk=2, seed=5)
    validation_paraphrases(chunks, tmp_path / "v2.parquet", tmp_path / "q.jsonl", llm, n_chunks=2, per_chunk=2, seed=5)
    v1, v2 = pd.read_parquet(tmp_path / "v1.parquet"), pd.read_parquet(tmp_path / "v2.parquet")
    assert v1.equals(v2) and v1["chunk_id"].nunique() == 2 and len(v1) == 4
    assert v1["text"].str.contains("seed 100005").all()  # apart from the training paraphrases' seeds


def test_interrupted_generation_never_pays_twice(tmp_path, chunks):
    """A run killed after two paid calls: the rerun replays those two from the cache and pays only the rest."""
    paid = []
    inner = fake_llm(tmp_path).backend

    def flaky(req):
        if len(paid) == 2:
            raise KeyboardInterrupt  # the job is killed mid-rule
        paid.append(req)
        return inner(req)

    llm = LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_questions(chunks, tmp_path / "cand.parquet", tmp_path / "q.jsonl", llm, per_chunk=4, seed=1)
    assert not (tmp_path / "cand.parquet").exists()
    again = LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=lambda r: (paid.append(r), inner(r))[1])
    generate_questions(chunks, tmp_path / "cand.parquet", tmp_path / "q.jsonl", again, per_chunk=4, seed=1)
    assert len(paid) == 3 and again.spend.calls == 1 and again.spend.cached == 2
    assert len(pd.read_parquet(tmp_path / "cand.parquet")) == 12


def test_mmlu_from_the_hub_through_datasets(tmp_path, monkeypatch):
    """cais/mmlu's layout (question, subject, choices, answer as an index) via datasets.load_dataset."""
    import datasets

    def split(n):
        return datasets.Dataset.from_dict({"question": [f"Q{i}?" for i in range(n)], "subject": ["anatomy"] * n,
                                           "choices": [["a", "b", "c", "d"]] * n, "answer": [i % 4 for i in range(n)]})

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or
                        datasets.DatasetDict({"test": split(7), "validation": split(3), "dev": split(5)}))
    out = tmp_path / "questions.parquet"
    load_mmlu_questions({"source": "mmlu", "dataset": "cais/mmlu", "subject": "anatomy"}, out)
    df = read_questions(out)
    assert calls == [("cais/mmlu", "anatomy")]
    assert df["split"].value_counts().to_dict() == {"test": 7, "dev": 5}
    assert df["answer"].tolist()[:4] == [0, 1, 2, 3]
