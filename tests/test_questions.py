import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from loopback import Handler, serve

from kinject.errors import KinjectError
from kinject.qa.llm import LLMClient, ResponseCache, client_from_config
from kinject.qa.paraphrases import paraphrase_chunks, paraphrase_set, validation_paraphrases
from kinject.qa.sets import (
    apply_review,
    generate_questions,
    load_mmlu_questions,
    mmlu_from_csv,
    read_questions,
    select_questions,
    write_questions,
    write_review_sheet,
)


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


GOOD_ROWS = 'Q1?,a,b,c,d,C\nQ2?,"5,300","9,600",g,h,A\nQ3?,a,b,c,d,B\n'


@pytest.mark.parametrize("text, message", [
    (GOOD_ROWS.replace("Q2?", '"Q2?'), "malformed CSV at line 2: ',' expected after '\"'"),  # pandas misreads it silently
    (GOOD_ROWS.replace(",h,A", ",h,A,x"), "row 2: 7 fields, expected 6 (question, A, B, C, D, answer)"),
    (GOOD_ROWS.replace(",d,B", ",B"), "row 3: 5 fields, expected 6 (question, A, B, C, D, answer)"),
    ("\n\n", "no questions in the file"),
])
def test_a_malformed_mmlu_csv_is_one_line_naming_the_file(tmp_path, text, message):
    write_mmlu(tmp_path, "atlas", [])
    path = tmp_path / "data" / "test" / "atlas_test.csv"
    path.write_text(GOOD_ROWS)
    assert mmlu_from_csv(tmp_path, "atlas")["choices"].map(list).tolist()[1] == ["5,300", "9,600", "g", "h"]
    path.write_text(text)
    with pytest.raises(KinjectError) as err:
        mmlu_from_csv(tmp_path, "atlas")
    assert str(err.value) == f"{path}: {message}"


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


def three_questions(tmp_path):
    selected = tmp_path / "selected.parquet"
    frame = questions_frame()
    write_questions(selected, pd.concat([frame, frame.iloc[[1]].assign(id="c", question="S?")], ignore_index=True))
    return selected


def test_only_accepted_questions_enter_the_set_by_default(tmp_path, caplog):
    selected, out, review = three_questions(tmp_path), tmp_path / "questions.parquet", tmp_path / "review.csv"
    review.write_text("id,decision\na,accept\nb,reject\n")  # c: not reviewed
    caplog.set_level("INFO")
    summary = apply_review(selected, review, out)
    assert read_questions(out)["id"].tolist() == ["a"]
    assert summary == "1 questions; review: 1 accepted, 1 rejected, 1 unreviewed (left out) of 3 questions"
    # keep_unreviewed: the unreviewed question enters too, counted; a rejected one never does
    summary = apply_review(selected, review, out, keep_unreviewed=True, counts_out=tmp_path / "counts.json")
    assert read_questions(out)["id"].tolist() == ["a", "c"]
    assert json.loads((tmp_path / "counts.json").read_text()) == {  # for the tables' notes
        "accepted": 1, "rejected": 1, "unreviewed": 1, "unreviewed_kept": True, "questions": 2}
    assert "1 unreviewed (kept: questions.keep_unreviewed)" in summary
    assert "review: 1 unreviewed questions enter the set (questions.keep_unreviewed: true)" in caplog.text
    # an empty decision (the sheet as written, not filled in) is no decision
    review.write_text("id,question,decision\na,Q?,\nb,R?,Accept \nc,S?,\n")
    apply_review(selected, review, out)
    assert read_questions(out)["id"].tolist() == ["b"]


def test_a_review_that_accepts_nothing_is_one_line(tmp_path):
    selected, out, review = three_questions(tmp_path), tmp_path / "questions.parquet", tmp_path / "review.csv"
    review.write_text("id,decision\n")  # a header-only file reviews nothing: no question is accepted
    with pytest.raises(KinjectError, match=rf"{review}: no question to keep \(0 accepted, 0 rejected, 3 unreviewed "
                       r"\(left out\) of 3 questions\): accept some \(kinject review TASK writes the sheet\) or set "
                       r"questions.keep_unreviewed: true"):
        apply_review(selected, review, out)
    assert not out.exists()
    with pytest.raises(KinjectError, match="no question to keep"):
        apply_review(selected, "skip", out)  # going without a review leaves every question unreviewed
    apply_review(selected, "skip", out, keep_unreviewed=True)
    assert read_questions(out)["id"].tolist() == ["a", "b", "c"]


BAD_REVIEWS = [
    ("", "is empty: expected a header row with columns id and decision"),
    ("a,accept\nb,reject\n", "row 1: expected a header with columns id and decision, found 'a,accept'"),
    ("id,verdict\na,accept\n", "row 1: expected a header with columns id and decision, found 'id,verdict'"),
    ("id,decision\na,accept\nb,reject\na,accept\n",
     "row 4: question 'a' is reviewed on rows 2 and 4, twice \\(accept both times\\)"),
    ("id,decision\na,accept\nb,reject\nb,accept\n",
     "row 4: question 'b' is reviewed on rows 3 and 4, conflicting decisions \\(reject and accept\\)"),
    ("id,decision\na,accept\n,\nb,reject\n", "row 3: an empty row"),
    ("id,decision\na,accept\n,reject\n", "row 3: no question id"),
    ("id,decision\nzz,reject\n", "row 2: reviews unknown question id 'zz'"),
    ("id,decision\na,accept\na2,maybe\n".replace("a2", "b"), "row 3: decision 'maybe' for 'b' is not accept or reject"),
]


@pytest.mark.parametrize("text, message", BAD_REVIEWS)
def test_a_bad_review_file_is_one_line_naming_file_and_row(tmp_path, text, message):
    selected, out, review = three_questions(tmp_path), tmp_path / "questions.parquet", tmp_path / "review.csv"
    write_questions(out, questions_frame())  # an earlier build, which the error must leave alone
    review.write_text(text)
    with pytest.raises(KinjectError, match=rf"^{review}: {message}$"):
        apply_review(selected, review, out, keep_unreviewed=True)
    assert read_questions(out)["id"].tolist() == ["a", "b"]


def test_a_review_sheet_saved_by_a_spreadsheet_is_read(tmp_path):
    """Excel's "CSV UTF-8" where the decimal mark is a comma: ';' separated, a byte-order mark, CRLF line ends,
    a multi-line options cell in quotes."""
    selected, out, review = three_questions(tmp_path), tmp_path / "questions.parquet", tmp_path / "review.csv"
    review.write_bytes("\ufeffid;question;options;decision\r\na;Q?;\"A. x\r\nB. y\";accept\r\nb;R?;;Reject\r\n"
                       .encode("utf-8"))
    assert apply_review(selected, review, out).startswith("1 questions; review: 1 accepted, 1 rejected, 1 unreviewed")
    assert read_questions(out)["id"].tolist() == ["a"]
    review.write_bytes(b"\xef\xbb\xbfid\tdecision\r\nb\taccept\r\n")  # tab separated too
    apply_review(selected, review, out)
    assert read_questions(out)["id"].tolist() == ["b"]


@pytest.mark.parametrize("content, message", [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", r"not UTF-8 text \(byte 0\): save the sheet as CSV UTF-8"),
    ("id;d\u00e9cision\na;accept\n".encode("latin-1"), r"not UTF-8 text \(byte 4\): save the sheet as CSV UTF-8"),
    (b"PK garbage | not a sheet\n\x01\x02\n", r"row 1: expected a header with columns id and decision, found "
                                                r"'PK garbage \| not a sheet'")])
def test_a_review_sheet_that_is_not_utf8_csv_is_one_line(tmp_path, content, message):
    selected, out, review = three_questions(tmp_path), tmp_path / "questions.parquet", tmp_path / "review.csv"
    write_questions(out, questions_frame())  # an earlier build, which the error must leave alone
    review.write_bytes(content)
    with pytest.raises(KinjectError, match=rf"^{review}: {message}$"):
        apply_review(selected, review, out)
    assert read_questions(out)["id"].tolist() == ["a", "b"]


def test_review_is_required_unless_skipped(tmp_path):
    selected = three_questions(tmp_path)
    out = tmp_path / "questions.parquet"
    with pytest.raises(KinjectError, match=r"review\.csv: the human review file does not exist.*kinject review TASK"
                       r".*questions.review: skip"):
        apply_review(selected, tmp_path / "review.csv", out)
    assert not out.exists()


def test_the_review_sheet_lists_each_question_with_its_source_and_an_empty_decision(tmp_path):
    selected = tmp_path / "selected.parquet"
    write_questions(selected, questions_frame(chunk_id="7-0").assign(chunk_id=["3-1", "7-0"]))
    chunks = tmp_path / "chunks.parquet"
    chunk_texts = {"3-1": "Chunk three.", "7-0": "Chunk seven, with a comma."}
    pd.DataFrame({"chunk_id": list(chunk_texts), "text": list(chunk_texts.values())}).to_parquet(chunks)
    write_review_sheet(selected, chunks, tmp_path / "sheet.csv")
    sheet = pd.read_csv(tmp_path / "sheet.csv", dtype=str, keep_default_na=False)
    assert sheet.to_dict("records") == [
        {"id": "a", "question": "Q?", "options": "A. x\nB. y", "answer": "B. y", "source_chunk": "Chunk three.",
         "decision": ""},
        {"id": "b", "question": "R?", "options": "A. x\nB. y", "answer": "A. x",
         "source_chunk": "Chunk seven, with a comma.", "decision": ""}]
    # filled in and saved as the review, it is read as one
    sheet.loc[1, "decision"] = "accept"
    sheet.to_csv(tmp_path / "review.csv", index=False)
    apply_review(selected, tmp_path / "review.csv", tmp_path / "q.parquet")
    assert read_questions(tmp_path / "q.parquet")["id"].tolist() == ["b"]


def test_question_target_is_a_seeded_sample_after_review(tmp_path):
    rows = [{"id": f"q{i}", "question": f"Q{i}?", "choices": ["x", "y"], "answer": 0, "split": "test",
             "chunk_id": f"{i}-0"} for i in range(40)]
    selected = tmp_path / "selected.parquet"
    write_questions(selected, pd.DataFrame(rows))
    review = tmp_path / "review.csv"
    review.write_text("id,decision\n" + "".join(f"q{i},{'reject' if i < 10 else 'accept'}\n" for i in range(40)))
    kept = []
    for seed in (1, 1, 2):
        apply_review(selected, review, tmp_path / "q.parquet", target=25, seed=seed)
        kept.append(read_questions(tmp_path / "q.parquet")["id"].tolist())
    assert kept[0] == kept[1] != kept[2] and len(kept[0]) == 25
    assert not {f"q{i}" for i in range(10)} & set(kept[0])  # sampled from what the review kept
    assert kept[0] == sorted(kept[0], key=lambda q: int(q[1:]))  # in their original order
    with pytest.raises(KinjectError, match="30 questions left after review, fewer than questions.target 31"):
        apply_review(selected, review, tmp_path / "q.parquet", target=31, seed=1)


def fake_reply(req) -> str:
    """A JSON answer to each of our three prompts, recognised by its wording."""
    prompt, seed = req["messages"][-1]["content"], req["seed"]
    if prompt.startswith("Write 4"):
        qs = [{"question": f"Q{i} seed {seed}?", "choices": ["w", "x", "y", "z"], "answer": i % 4} for i in range(4)]
        return json.dumps({"questions": qs})
    if prompt.startswith("Below are"):
        return json.dumps({"keep": [3, 1]})
    n = int(prompt.split("Give ")[1].split(" ")[0])
    return json.dumps({"paraphrases": [f"para seed {seed} #{i}" for i in range(n)]})


def fake_llm(tmp_path, **kw):
    """An OpenAI-shaped backend answering our three prompts by their wording."""
    return LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=lambda r: (fake_reply(r), None),
                     **kw)


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


def letter_reply(req) -> str:
    """fake_reply, but the question of chunk "beta" (or of every chunk) answered with letters, as LLMs like to."""
    reply = json.loads(fake_reply(req))
    for q in reply.get("questions", []):
        q["answer"] = "ABCD"[q["answer"]]
    return json.dumps(reply)


@pytest.mark.parametrize("letters_in, fraction, stops", [("beta", 0.5, False), ("beta", 0.3, True),
                                                           ("", 0.99, True)])
def test_letter_answers_are_quarantined_and_too_many_stop_the_stage(tmp_path, chunks, letters_in, fraction, stops):
    def backend(req):
        return (letter_reply(req) if letters_in in req["messages"][-1]["content"] else fake_reply(req)), None

    llm = LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=backend)
    out, quarantine = tmp_path / "cand.parquet", tmp_path / "q.jsonl"
    run = lambda: generate_questions(chunks, out, quarantine, llm, per_chunk=4, seed=1,  # noqa: E731
                                     max_quarantined_fraction=fraction)
    reason = "answer 'A' is a letter, not the index 0-3 of the correct choice"
    if stops:
        calls = 1 if letters_in else 3
        with pytest.raises(KinjectError) as err:
            run()
        assert str(err.value) == (f"{quarantine}: {calls} of 3 LLM calls quarantined ({calls / 3:.0%}), more than "
                                  f"llm.max_quarantined_fraction {fraction:g} allows; the first: {reason} "
                                  "(every reply is in the job's log: Snakemake removes a failed job's outputs, "
                                  "this file with them)")
        assert not out.exists()
    else:
        assert run() == "8 candidate questions from 3 chunks, 1 calls quarantined"
        assert pd.read_parquet(out)["chunk_id"].unique().tolist() == ["1-0", "3-0"]
    (entry,) = [json.loads(line) for line in quarantine.read_text().splitlines()][:1]
    assert [r["error"] for r in entry["replies"]] == [reason] * 3  # asked again twice (invalid_retries), then kept


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


def test_mmlu_from_the_hub_through_datasets(tmp_path):
    """cais/mmlu's layout (question, subject, choices, answer as an index) as rule download_dataset leaves it
    (<subject>/<split>-*.parquet), read by datasets' parquet builder; the validation split is not used."""
    import datasets

    def split(n):
        return datasets.Dataset.from_dict({"question": [f"Q{i}?" for i in range(n)], "subject": ["anatomy"] * n,
                                           "choices": [["a", "b", "c", "d"]] * n, "answer": [i % 4 for i in range(n)]})

    (tmp_path / "anatomy").mkdir()
    for name, n in (("test", 7), ("validation", 3), ("dev", 5)):
        split(n).to_parquet(tmp_path / "anatomy" / f"{name}-00000-of-00001.parquet")
    out = tmp_path / "questions.parquet"
    load_mmlu_questions({"source": "mmlu", "dataset": "cais/mmlu", "subject": "anatomy"}, out, folder=tmp_path)
    df = read_questions(out)
    assert df["split"].value_counts().to_dict() == {"test": 7, "dev": 5}
    assert df["answer"].tolist()[:4] == [0, 1, 2, 3]


def test_short_chunk_stops_its_paraphrase_set_unless_allowed(tmp_path, chunks, caplog):
    """Chunk 2-0's second call (paraphrases 3-4, seed 11) never validates: it is quarantined, generated.parquet
    is short for 2-0, and every set that needs one of its missing paraphrases says so."""
    def backend(req):
        text = req["messages"][-1]["content"]
        bad = "beta text" in text and req["seed"] % 1000003 == 11
        return ("not json" if bad else fake_reply(req)), None

    llm = LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=backend)
    gen = tmp_path / "generated.parquet"
    with caplog.at_level(logging.INFO, logger="kinject.qa.paraphrases"):
        paraphrase_chunks(chunks, gen, tmp_path / "q.jsonl", llm, count=5, per_call=2, seed=10)
    assert "1 of 3 chunks are short of their 5 paraphrases (their calls were quarantined): 2-0 (3 of 5)" in caplog.text
    assert len(Path(tmp_path / "q.jsonl").read_text().splitlines()) == 1
    paraphrase_set(chunks, gen, tmp_path / "k2.parquet", k=2)  # 2-0 has paraphrases 1 and 2
    out = tmp_path / "k3.parquet"
    with pytest.raises(KinjectError) as err:
        paraphrase_set(chunks, gen, out, k=3)
    assert str(err.value) == (
        f"{gen}: chunk '2-0' has 2 of the 3 paraphrases set k=3 needs; 1 of 3 chunks are short (their LLM calls "
        "were quarantined: see the quarantine file next to it); set paraphrases.allow_incomplete: true to build "
        "the set anyway")
    assert not out.exists()
    caplog.clear()
    paraphrase_set(chunks, gen, out, k=3, allow_incomplete=True)
    assert "set k=3 built with 1 of 3 chunks short: 2-0 (2 of 3)" in caplog.text
    k3 = pd.read_parquet(out)
    assert k3.groupby("chunk_id").size().to_dict() == {"1-0": 4, "2-0": 3, "3-0": 4}


def test_chunk_without_any_paraphrase_is_named(tmp_path, chunks, caplog):
    def backend(req):
        return ("{}" if "gamma text" in req["messages"][-1]["content"] else fake_reply(req)), None

    llm = LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), backend=backend, invalid_retries=0)
    with caplog.at_level(logging.INFO, logger="kinject.qa.paraphrases"):
        validation_paraphrases(chunks, tmp_path / "v.parquet", tmp_path / "q.jsonl", llm, n_chunks=3, per_chunk=2,
                               seed=5)
    assert "1 of 3 chunks are short of their 2 paraphrases (their calls were quarantined): 3-0 (0 of 2)" in caplog.text
    gen = tmp_path / "generated.parquet"
    paraphrase_chunks(chunks, gen, tmp_path / "q.jsonl", llm, count=2, per_call=2, seed=10)
    with pytest.raises(KinjectError, match=r"chunk '3-0' has 0 of the 1 paraphrases set k=1 needs; 1 of 3 chunks"):
        paraphrase_set(chunks, gen, tmp_path / "k1.parquet", k=1)


def test_complete_chunks_are_logged_as_complete(tmp_path, chunks, caplog):
    with caplog.at_level(logging.INFO, logger="kinject.qa.paraphrases"):
        paraphrase_chunks(chunks, tmp_path / "g.parquet", tmp_path / "q.jsonl", fake_llm(tmp_path), count=3,
                          per_call=2, seed=1)
    assert "all 3 chunks have their 3 paraphrases" in caplog.text


REFUSAL = {"error": {"message": "Invalid parameter: 'response_format' of type 'json_object' is not supported with "
                                "this model.", "type": "invalid_request_error", "param": "response_format",
                     "code": None}}


class Gpt4Like(Handler):
    """An OpenAI-compatible endpoint that behaves like the real API for model gpt-4: JSON mode is refused with
    HTTP 400; without it, the JSON comes wrapped in a fenced block inside prose."""

    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if "response_format" in body and body["model"] == "gpt-4":
            return self.respond(400, json.dumps(REFUSAL))
        content = f"Here is the JSON you asked for:\n\n```json\n{fake_reply(body)}\n```\n\nI hope this helps."
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                 "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}
        self.respond(200, json.dumps(reply))


@pytest.fixture
def paper_llm(tmp_path, monkeypatch):
    """config.yaml's llm section (the paper's gpt-4) pointed at a gpt-4-like loopback server, with a key set."""
    from kinject.settings import ROOT, load_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    Gpt4Like.requests = []
    with serve(Gpt4Like) as url:
        llm = load_config(ROOT / "config.yaml")["llm"]
        yield {**llm, "base_url": f"{url}/v1", "cache": str(tmp_path / "cache")}


def test_paper_config_generates_everything_from_gpt4_without_json_mode(tmp_path, chunks, paper_llm):
    assert (paper_llm["model"], paper_llm["json_mode"], paper_llm["mode"]) == ("gpt-4", False, "live")
    llm = client_from_config(paper_llm)
    generate_questions(chunks, tmp_path / "cand.parquet", tmp_path / "q1.jsonl", llm, per_chunk=4, seed=1)
    select_questions(tmp_path / "cand.parquet", tmp_path / "sel.parquet", tmp_path / "q2.jsonl", llm, keep=2, seed=1)
    paraphrase_chunks(chunks, tmp_path / "gen.parquet", tmp_path / "q3.jsonl", llm, count=5, per_call=5, seed=1)
    validation_paraphrases(chunks, tmp_path / "val.parquet", tmp_path / "q4.jsonl", llm, n_chunks=2, per_chunk=2,
                           seed=1)
    assert len(read_questions(tmp_path / "sel.parquet")) == 6 and len(pd.read_parquet(tmp_path / "gen.parquet")) == 15
    assert len(pd.read_parquet(tmp_path / "val.parquet")) == 4
    assert all((tmp_path / f"q{i}.jsonl").read_text() == "" for i in range(1, 5))  # nothing quarantined
    # 3 question calls, 1 selection call (the fake's candidates are alike for every chunk: one cached prompt),
    # 3 paraphrase calls, 2 validation calls
    assert len(Gpt4Like.requests) == 3 + 1 + 3 + 2 and llm.spend.invalid == 0
    assert {r["model"] for r in Gpt4Like.requests} == {"gpt-4"}
    assert not any("response_format" in r for r in Gpt4Like.requests)


def test_json_mode_against_gpt4_fails_once_naming_model_and_switch(tmp_path, chunks, paper_llm):
    llm = client_from_config({**paper_llm, "json_mode": True})
    with pytest.raises(KinjectError) as err:
        generate_questions(chunks, tmp_path / "cand.parquet", tmp_path / "q.jsonl", llm, per_chunk=4, seed=1)
    assert str(err.value) == (
        f"{paper_llm['base_url']}: model 'gpt-4' refuses JSON mode (HTTP 400, response_format json_object): "
        "set llm.json_mode: false for this model (the prompts ask for JSON themselves)")
    assert len(Gpt4Like.requests) == 1  # refused once: no retries, no re-asks, no further chunks
    assert not (tmp_path / "cand.parquet").exists() and not list((tmp_path / "cache").rglob("*.json"))


@pytest.fixture(scope="module")
def review_workflow(tmp_path_factory):
    """A copy of the checkout whose demo question set is built up to selected.parquet (replayed LLM calls)."""
    from conftest import copy_checkout, run_snakemake

    work = copy_checkout(tmp_path_factory.mktemp("review_workflow"))
    proc = run_snakemake(work, "--cores", "1", "--configfile", "config/demo.yaml", "--",
                         "results/current_events/questions/selected.parquet", "results/current_events/chunks.parquet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


@pytest.mark.slow  # runs Snakemake
def test_the_review_rule_through_snakemake_on_bad_and_good_review_files(review_workflow):
    from conftest import run_snakemake

    work, target = review_workflow, "results/current_events/questions.parquet"
    review = work / "resources" / "demo" / "current_events_review.csv"
    args = ("--cores", "1", "--configfile", "config/demo.yaml", "--", target)
    for text, message in [("", "is empty: expected a header row with columns id and decision"),
                          ("100-0-q0,accept\n", "row 1: expected a header with columns id and decision"),
                          ("id,decision\n100-0-q0,accept\n100-0-q0,reject\n",
                           "row 3: question '100-0-q0' is reviewed on rows 2 and 3, conflicting decisions")]:
        review.write_text(text)
        proc = run_snakemake(work, *args)
        assert proc.returncode != 0
        assert f"kinject error: {review.relative_to(work)}: {message}" in proc.stderr, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert not (work / target).exists()
    # accepted questions only: keep_unreviewed off (config.yaml's default) over the demo's on
    overlay = work / "strict.yaml"
    overlay.write_text("tasks: {current_events: {questions: {keep_unreviewed: false}}}\n")
    review.write_text("id,decision\n100-0-q0,accept\n100-0-q1,reject\n114-0-q0,accept\n")
    proc = run_snakemake(work, "--cores", "1", "--configfile", "config/demo.yaml", "strict.yaml", "--", target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_questions(work / target)["id"].tolist() == ["100-0-q0", "114-0-q0"]
    assert "2 questions; review: 2 accepted, 1 rejected, 67 unreviewed (left out) of 70 questions" in proc.stderr
    counts = json.loads((work / "results/current_events/questions/review_counts.json").read_text())
    assert counts == {"accepted": 2, "rejected": 1, "unreviewed": 67, "unreviewed_kept": False, "questions": 2}


@pytest.mark.slow  # runs Snakemake
def test_kinject_review_writes_the_sheet_through_snakemake(review_workflow):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "kinject.cli", "review", "current_events", "config/demo.yaml"],
                          cwd=review_workflow, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "review sheet: results/current_events/questions/review_sheet.csv" in proc.stdout
    sheet = pd.read_csv(review_workflow / "results/current_events/questions/review_sheet.csv", dtype=str,
                        keep_default_na=False)
    selected = read_questions(review_workflow / "results/current_events/questions/selected.parquet")
    assert sheet["id"].tolist() == selected["id"].tolist() and set(sheet["decision"]) == {""}
    assert sheet["source_chunk"].str.len().min() > 0
    bad = subprocess.run([sys.executable, "-m", "kinject.cli", "review", "atlas", "config/demo.yaml"],
                         cwd=review_workflow, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("kinject error: config/demo.yaml: task 'atlas' has mmlu_csv questions: only "
                                  "generated questions are reviewed")
