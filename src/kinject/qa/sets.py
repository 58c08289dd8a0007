"""The question sets: MMLU subjects (datasets or the original CSV layout) and generated current events."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet, write_json, write_parquet
from kinject.qa import prompts
from kinject.qa.llm import Call, LLMClient
from kinject.qa.question_file import COLUMNS, read_questions, write_questions

log = logging.getLogger(__name__)

LETTERS = "ABCD"


def _mmlu_rows(records, subject: str, split: str) -> list[dict]:
    return [{"id": f"{subject}-{split}-{i}", "question": r["question"], "choices": list(r["choices"]),
             "answer": int(r["answer"]), "split": split, "chunk_id": None} for i, r in enumerate(records)]


def mmlu_csv_candidates(root, subject: str, split: str) -> list[Path]:
    """Where a split's CSV may lie in the original MMLU release layout: root/data/{split}/{subject}_{split}.csv,
    or root/{split}/..."""
    return [Path(root) / "data" / split / f"{subject}_{split}.csv", Path(root) / split / f"{subject}_{split}.csv"]


def mmlu_csv_files(root, subject: str) -> dict[str, Path | None]:
    """{split: its CSV or None} for test and dev: rule load_mmlu_questions's inputs."""
    return {split: next((p for p in mmlu_csv_candidates(root, subject, split) if p.exists()), None)
            for split in ("test", "dev")}


def read_mmlu_csv(path) -> list[list[str]]:
    """The rows of one MMLU CSV (no header; blank lines skipped), each of exactly 6 fields. The csv module in
    strict mode, since a stray quote is not an error to pandas: it swallows the rows up to the next quote into
    one question, silently."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            try:
                rows = [row for row in reader if row]
            except csv.Error as exc:
                raise KinjectError(path, f"malformed CSV at line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise KinjectError(path, f"not UTF-8 text: {exc}") from None
    for i, row in enumerate(rows, 1):
        if len(row) != 6:
            raise KinjectError(path, f"row {i}: {len(row)} fields, expected 6 (question, A, B, C, D, answer)")
    return rows


def mmlu_from_csv(root, subject: str) -> pd.DataFrame:
    """The original MMLU release layout: data/{test,dev}/{subject}_{split}.csv, no header, answer letter."""
    rows = []
    for split, path in mmlu_csv_files(root, subject).items():
        if path is None:
            if split == "test":
                raise KinjectError(mmlu_csv_candidates(root, subject, split)[0],
                                   f"MMLU test file for subject {subject!r} not found")
            continue
        records = []
        for i, r in enumerate(read_mmlu_csv(path), 1):
            if r[5].strip() not in tuple(LETTERS):
                raise KinjectError(path, f"row {i}: answer {r[5]!r} is not one of A, B, C, D")
            records.append({"question": r[0], "choices": list(r[1:5]), "answer": LETTERS.index(r[5].strip())})
        if not records:
            raise KinjectError(path, "no questions in the file")
        rows += _mmlu_rows(records, subject, split)
    return pd.DataFrame(rows, columns=COLUMNS)


def mmlu_from_folder(folder, subject: str) -> pd.DataFrame:
    """MMLU from its hub repository downloaded by rule download_dataset (cais/mmlu: <subject>/<split>-*.parquet),
    read through `datasets`' parquet builder, offline: test + dev (5-shot) splits."""
    import datasets

    files = {split: sorted(str(p) for p in Path(folder, subject).glob(f"{split}-*.parquet")) for split in ("test", "dev")}
    missing = [split for split, found in files.items() if not found]
    if missing:
        raise KinjectError(Path(folder, subject), f"no {' or '.join(missing)} split ({missing[0]}-*.parquet): not the "
                                                  "cais/mmlu parquet layout")
    ds = datasets.load_dataset("parquet", data_files=files)
    return pd.DataFrame(_mmlu_rows(ds["test"], subject, "test") + _mmlu_rows(ds["dev"], subject, "dev"),
                        columns=COLUMNS)


def mmlu_settings(spec: dict) -> dict:
    """The keys of a task's `questions` that load_mmlu_questions reads (its rule's params: the schema also
    fills in the generated-question keys, which must not re-run it)."""
    keys = ("source", "subject", "path") if spec["source"] == "mmlu_csv" else ("source", "subject", "dataset")
    return {key: spec[key] for key in keys if key in spec}


def load_mmlu_questions(spec: dict, out, folder=None) -> None:
    """A task's MMLU questions: from the CSV layout (source mmlu_csv), or from ``folder``, the dataset's
    download (source mmlu)."""
    if spec["source"] == "mmlu_csv":
        df = mmlu_from_csv(spec["path"], spec["subject"])
    else:
        df = mmlu_from_folder(folder, spec["subject"])
    write_questions(out, df)
    splits = ", ".join(f"{k}: {v}" for k, v in df["split"].value_counts().items())
    log.info("%d MMLU questions (%s)", len(df), splits)
    return f"{len(df)} MMLU questions ({splits})"


def valid_questions(n: int, options: int = 4):
    def validate(reply: dict) -> list[dict]:
        items = reply["questions"]
        if not isinstance(items, list) or len(items) < n:
            raise ValueError(f"expected {n} questions, got {len(items) if isinstance(items, list) else items!r}")
        out = []
        for q in items[:n]:
            choices = [str(c) for c in q["choices"]]
            if len(choices) != options or len(set(choices)) != options:
                raise ValueError(f"a question needs {options} distinct choices: {choices!r}")
            answer = q["answer"]
            if isinstance(answer, str) and answer.strip().upper() in LETTERS[:options]:
                raise ValueError(f"answer {answer!r} is a letter, not the index 0-{options - 1} of the correct choice")
            answer = int(answer)
            if not 0 <= answer < options or not str(q["question"]).strip():
                raise ValueError(f"bad question or answer index: {q!r}")
            out.append({"question": str(q["question"]).strip(), "choices": choices, "answer": answer})
        return out

    return validate


def valid_selection(n: int, keep: int):
    def validate(reply: dict) -> list[int]:
        picked = [int(i) for i in reply["keep"]]
        if len(picked) != keep or len(set(picked)) != keep or not all(0 <= i < n for i in picked):
            raise ValueError(f"expected {keep} distinct indices below {n}, got {reply['keep']!r}")
        return picked

    return validate


def check_quarantined(client: LLMClient, calls: int, quarantine, max_fraction: float) -> None:
    """Stop a stage whose LLM replies were mostly unusable instead of going on with what is left: more than
    ``max_fraction`` (llm.max_quarantined_fraction) of its ``calls`` quarantined is a one-line error naming the
    quarantine file and the first reply's reason (every invalid reply is also in the job's log)."""
    count = len(client.quarantined)
    if calls and count / calls > max_fraction:
        reason = client.quarantined[0]["replies"][-1]["error"]
        raise KinjectError(quarantine, f"{count} of {calls} LLM calls quarantined ({count / calls:.0%}), more than "
                                       f"llm.max_quarantined_fraction {max_fraction:g} allows; the first: {reason} "
                                       "(every reply is in the job's log: Snakemake removes a failed job's outputs, "
                                       "this file with them)")


def generate_questions(chunks_path, out, quarantine, client: LLMClient, *, per_chunk: int, seed: int,
                       max_quarantined_fraction: float = 1.0) -> None:
    """Ask for `per_chunk` specific multiple-choice questions about every chunk (the paper: 4)."""
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    jobs = [(c.chunk_id, prompts.questions_messages(c.text, per_chunk)) for c in chunks.itertuples()]
    bound = client.questions_max_tokens(per_chunk)
    calls = [Call(m, seed, valid_questions(per_chunk), bound) for _, m in jobs]
    client.ensure_can_ask(calls)
    rows = []
    for (chunk_id, _), qs in zip(jobs, client.map_json(calls, "generate_questions")):
        rows += [{"chunk_id": chunk_id, "candidate": i, **q} for i, q in enumerate(qs or [])]
    client.log_spend()
    client.write_quarantine(quarantine)
    check_quarantined(client, len(jobs), quarantine, max_quarantined_fraction)
    summary = f"{len(rows)} candidate questions from {len(jobs)} chunks, {len(client.quarantined)} calls quarantined"
    if not rows:
        raise KinjectError(chunks_path, "no chunk produced valid questions (see the quarantine file)")
    write_parquet(out, pd.DataFrame(rows))
    return summary


def select_questions(candidates_path, out, quarantine, client: LLMClient, *, keep: int, seed: int,
                     max_quarantined_fraction: float = 1.0) -> None:
    """Ask the LLM to keep the `keep` most specific candidates of each chunk (the paper: 2 of 4)."""
    cands = read_parquet(candidates_path, columns=["chunk_id", "candidate", "question", "choices", "answer"])
    groups = []
    for chunk_id, group in cands.groupby("chunk_id", sort=False):
        listing = [{"question": r.question, "choices": list(r.choices), "answer": int(r.answer)} for r in group.itertuples()]
        groups.append((chunk_id, listing, prompts.select_messages(listing, keep)))
    bound = client.selection_max_tokens()
    asked = [g for g in groups if len(g[1]) > keep]  # a chunk with no more than `keep` candidates keeps them all
    calls = [Call(m, seed, valid_selection(len(listing), keep), bound) for _, listing, m in asked]
    client.ensure_can_ask(calls)
    picks = dict(zip((g[0] for g in asked), client.map_json(calls, "select_questions")))
    rows = []
    for chunk_id, listing, messages in groups:
        picked = picks[chunk_id] if chunk_id in picks else list(range(len(listing)))
        for j, i in enumerate(picked or []):
            rows.append({"id": f"{chunk_id}-q{j}", **listing[i], "split": "test", "chunk_id": chunk_id})
    client.log_spend()
    client.write_quarantine(quarantine)
    check_quarantined(client, sum(len(listing) > keep for _, listing, _ in groups), quarantine,
                      max_quarantined_fraction)
    write_questions(out, pd.DataFrame(rows, columns=COLUMNS))
    return f"{len(rows)} questions kept of {len(cands)} candidates, {len(client.quarantined)} calls quarantined"


REVIEW_COLUMNS = ["id", "question", "options", "answer", "source_chunk", "decision"]
DECISIONS = ("accept", "reject")


def apply_review(selected_path, review, out, *, keep_unreviewed: bool = False, target: int | None = None,
                 seed: int | None = None, counts_out=None) -> str:
    """The manual validation pass, then the question target.

    review: the human review CSV with columns ``id`` and ``decision`` (accept, reject, or empty: not yet
    reviewed; other columns, such as those of the sheet :func:`write_review_sheet` writes, are ignored),
    which must exist, or "skip" to go without one. Only accepted questions enter the set, unless
    ``keep_unreviewed``: then the unreviewed ones do too, and their count is logged and returned; rejected
    ones never do. target: how many questions to keep, a random sample seeded by `seed` (the paper: 910);
    fewer questions than that is an error. counts_out: a JSON file of the counts (accepted, rejected,
    unreviewed, unreviewed_kept, questions: the set's size), for the result tables' notes.
    """
    df = read_questions(selected_path)
    if review == "skip":
        decisions = {}
        log.info("review: skipped (questions.review: skip): %d questions, all unreviewed", len(df))
    else:
        decisions = read_review(review, df["id"])
    decision = df["id"].map(lambda qid: decisions.get(qid, ""))
    counts = {d or "unreviewed": int((decision == d).sum()) for d in ("accept", "reject", "")}
    keep = (decision == "accept") | ((decision == "") & keep_unreviewed)
    note = (f"{counts['accept']} accepted, {counts['reject']} rejected, {counts['unreviewed']} unreviewed "
            f"({'kept: questions.keep_unreviewed' if keep_unreviewed else 'left out'}) of {len(df)} questions")
    log.info("review: %s", note)
    if keep_unreviewed and counts["unreviewed"]:
        log.warning("review: %d unreviewed questions enter the set (questions.keep_unreviewed: true)",
                    counts["unreviewed"])
    if not keep.any():
        raise KinjectError(review if review != "skip" else selected_path,
                           f"no question to keep ({note}): accept some (kinject review TASK writes the sheet) "
                           "or set questions.keep_unreviewed: true")
    df = df[keep]
    if target is not None:
        if len(df) < target:
            raise KinjectError(selected_path, f"{len(df)} questions left after review, fewer than questions.target "
                               f"{target}: generate more (a wider events window) or lower the target")
        picked = np.sort(np.random.default_rng(seed).choice(len(df), size=target, replace=False))
        log.info("target: %d of %d questions kept, a random sample seeded by %s", target, len(df), seed)
        df = df.iloc[picked]
    write_questions(out, df)
    if counts_out is not None:
        write_json(counts_out, {"accepted": counts["accept"], "rejected": counts["reject"],
                                "unreviewed": counts["unreviewed"], "unreviewed_kept": bool(keep_unreviewed),
                                "questions": len(df)})
    return f"{len(df)} questions; review: {note}"


def review_delimiter(text: str) -> str:
    """The delimiter of a review sheet: the one of ``,``, ``;`` (a spreadsheet saving CSV where the decimal mark
    is a comma) and tab whose header row has both ``id`` and ``decision``; else ``,``, so the header's error
    shows what was found."""
    first = text.splitlines()[0] if text.strip() else ""
    for delimiter in (",", ";", "\t"):
        names = {name.strip() for name in next(csv.reader([first], delimiter=delimiter), [])}
        if {"id", "decision"} <= names:
            return delimiter
    return ","


def read_review(review_path, ids) -> dict[str, str]:
    """{question id: accept | reject} from the review CSV (rows with an empty decision: not reviewed).

    The sheet may come back from a spreadsheet: comma, semicolon or tab separated (:func:`review_delimiter`),
    with a UTF-8 byte-order mark and CRLF line ends. A bad file is one line naming it and the row (rows counted
    as in a spreadsheet, the header is row 1): not UTF-8, missing, empty, without the ``id,decision`` header, a row without an id, an id not in the question set,
    a decision other than accept/reject, or an id on two rows (the same decision twice, or conflicting).
    """
    path = Path(review_path)
    if not path.exists():
        raise KinjectError(path, "the human review file does not exist: write it (kinject review TASK writes the "
                           "sheet to fill in: a CSV with id and decision accept or reject per question of "
                           "questions/selected.parquet) or set questions.review: skip")
    try:  # "utf-8-sig": a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would join the first name
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KinjectError(path, f"not UTF-8 text (byte {exc.start}): save the sheet as CSV UTF-8") from None
    try:
        review = pd.read_csv(io.StringIO(text), sep=review_delimiter(text), dtype=str, keep_default_na=False,
                             skip_blank_lines=False).fillna("")
    except pd.errors.EmptyDataError:
        raise KinjectError(path, "is empty: expected a header row with columns id and decision") from None
    except pd.errors.ParserError as exc:
        raise KinjectError(path, f"not a CSV file ({str(exc).strip()})") from None
    if not {"id", "decision"} <= set(review.columns):
        raise KinjectError(path, f"row 1: expected a header with columns id and decision, found "
                           f"{','.join(map(str, review.columns))!r}")
    known, seen, decisions = set(ids), {}, {}
    for i, (qid, decision) in enumerate(zip(review["id"].str.strip(), review["decision"]), 2):
        decision = decision.strip().lower()
        if not qid:
            empty = not any(str(v).strip() for v in review.iloc[i - 2])
            raise KinjectError(path, f"row {i}: {'an empty row' if empty else 'no question id'}")
        if qid not in known:
            raise KinjectError(path, f"row {i}: reviews unknown question id {qid!r}")
        if decision and decision not in DECISIONS:
            raise KinjectError(path, f"row {i}: decision {decision!r} for {qid!r} is not accept or reject")
        if qid in seen:
            first, before = seen[qid]
            what = f"conflicting decisions ({before or 'empty'} and {decision or 'empty'})" if before != decision \
                else f"twice ({decision or 'empty'} both times)"
            raise KinjectError(path, f"row {i}: question {qid!r} is reviewed on rows {first} and {i}, {what}")
        seen[qid] = (i, decision)
        if decision:
            decisions[qid] = decision
    return decisions


def write_review_sheet(selected_path, chunks_path, out) -> str:
    """The sheet a person fills in: one row per question of ``selected_path`` with its id, question, options
    (one per line, lettered), answer (letter and text), the chunk it was written from, and an empty
    ``decision`` column (accept or reject). Save the filled sheet as the task's ``questions.review``."""
    df = read_questions(selected_path)
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"]).set_index("chunk_id")["text"]
    rows = []
    for q in df.itertuples():
        choices = list(q.choices)
        rows.append({"id": q.id, "question": q.question,
                     "options": "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices)),
                     "answer": f"{chr(65 + int(q.answer))}. {choices[int(q.answer)]}",
                     "source_chunk": chunks.get(q.chunk_id, ""), "decision": ""})
    missing = [q.chunk_id for q in df.itertuples() if q.chunk_id not in chunks.index]
    if missing:
        raise KinjectError(chunks_path, f"has no chunk {missing[0]!r} (question sources)")
    with atomic_path(out) as tmp:
        pd.DataFrame(rows, columns=REVIEW_COLUMNS).to_csv(tmp, index=False)
    return f"{len(rows)} questions to review in {out}: fill the decision column with accept or reject"


def control_settings(spec: dict) -> dict:
    """What rule control_questions reads of a control (evaluation.controls.<c>): its params."""
    return {"source": "table", "path": spec["path"]} if spec["source"] == "table" else mmlu_settings(spec)


def load_control_questions(spec: dict, out, folder=None) -> str:
    """A control question set (forgetting, kinject.reporting.forgetting): MMLU (from ``folder``, the download, or the
    CSV layout) or the user's table, written as every question file is; only its test questions are scored."""
    if spec["source"] == "table":
        from kinject.knowledge.corpus import load_table_questions

        return load_table_questions(spec["path"], out)
    return load_mmlu_questions(spec, out, folder=folder)
