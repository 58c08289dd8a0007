"""The demo's fictional world (kinject.demo.world) and its offline question/paraphrase author."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from kinject.demo import world as world_mod
from kinject.demo.author import (
    author_paraphrases,
    author_questions,
    author_selection,
    core_name,
    facts_in,
    load_world,
    specificity,
)
from kinject.errors import KinjectError
from kinject.knowledge.chunks import chunk_article

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
KBS = ("atlas", "current_events")


@pytest.fixture(scope="module")
def world():
    return load_world(DEMO / "world.json")


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    """wikiextractor's --json output for each committed dump: {kb: {title: text}}."""
    out = {}
    for kb in KBS:
        folder = tmp_path_factory.mktemp(kb)
        subprocess.run([sys.executable, "-m", "wikiextractor.WikiExtractor", "--json", "--no-templates", "-o",
                        str(folder), str(DEMO / f"{kb}.xml")], check=True, capture_output=True)
        docs = [json.loads(line) for part in sorted(folder.rglob("wiki_*")) for line in part.read_text().splitlines()]
        out[kb] = {d["title"]: d["text"] for d in docs}
    return out


@pytest.fixture(scope="module")
def chunks(cleaned):
    """The demo's chunks (config/demo.yaml: 25..120 words) of every cleaned article: [(kb, text)]."""
    return [(kb, c) for kb in KBS for text in cleaned[kb].values() for c in chunk_article(text, 25, 120)]


def test_regenerating_reproduces_the_committed_files(tmp_path):
    written = world_mod.write_world(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "atlas.xml", "current_events.xml", "world.json", "pretrain.jsonl",
        "mmlu/data/dev/atlas_dev.csv", "mmlu/data/test/atlas_test.csv"}
    for path in written:
        assert path.read_bytes() == (DEMO / path.relative_to(tmp_path)).read_bytes(), path.name


def test_every_fact_sentence_survives_wikiextractor_verbatim(world, cleaned):
    for fact in world.facts:
        assert fact.sentence in cleaned[fact.kb][fact.title], (fact.id, fact.sentence)


def test_wikiextractor_keeps_articles_and_drops_redirect_talk_category_table_list(world, cleaned):
    for kb in KBS:
        dump = (DEMO / f"{kb}.xml").read_text()
        assert "<redirect title=" in dump and "<ns>1</ns>" in dump and "<ns>14</ns>" in dump
        assert "{| class=" in dump and "\n* [[" in dump and "&lt;ref" in dump and "{{Infobox" in dump
        titles = set(cleaned[kb])
        assert titles == {f.title for f in world.facts if f.kb == kb}
        assert not any(t.startswith(("Talk:", "Category:")) for t in titles)
        redirect = re.search(r"<title>([^<]+)</title>\s*<ns>0</ns>\s*<id>\d+</id>\s*<redirect", dump).group(1)
        assert redirect not in titles
        for text in cleaned[kb].values():
            assert not re.search(r"\[\[|\]\]|'''|\{\{|<ref|\{\||^\*", text, flags=re.M), text[:200]
    assert 20 <= len(cleaned["atlas"]) <= 30 and 25 <= len(cleaned["current_events"]) <= 35


def test_articles_have_two_to_four_paragraphs_of_three_to_six_one_fact_sentences(world, cleaned):
    for kb in KBS:
        for text in cleaned[kb].values():
            paragraphs = [line for line in text.split("\n") if len(line.split()) >= 4]
            assert 2 <= len(paragraphs) <= 4
            for para in paragraphs:
                sentences = re.split(r"(?<=\.)\s+", para.strip())
                facts = facts_in(world, para)
                assert 3 <= len(sentences) == len(facts) <= 6 and 40 <= len(para.split()) <= 100
                for sentence, fact in zip(sentences, facts):
                    assert sentence == fact.sentence and fact.object in sentence
                    assert core_name(fact.subject) in sentence


def test_chunks_hold_every_fact_once_and_facts_in_finds_them_in_order(world, chunks):
    seen = Counter()
    for kb, text in chunks:
        facts = facts_in(world, text)
        assert facts and all(f.kb == kb for f in facts)
        positions = [text.index(f.sentence) for f in facts]
        assert positions == sorted(positions)
        seen.update(f.id for f in facts)
    assert set(seen) == {f.id for f in world.facts} and set(seen.values()) == {1}


def test_registry_renderings_and_questions(world):
    assert len({f.id for f in world.facts}) == len(world.facts)
    for fact in world.facts:
        assert len(fact.paraphrases) >= 10 and len(set(fact.renderings)) == len(fact.renderings)
        for rendering in fact.renderings:
            assert fact.object in rendering and rendering.endswith(".")
            assert 0.5 < len(rendering) / len(fact.sentence) < 2.2
        assert fact.question == fact.questions[0] and len(set(fact.questions)) >= 2
        assert all(q.endswith("?") and core_name(fact.subject) in q for q in fact.questions)
        pool = world.pool(fact)
        assert fact.object in pool and len(pool) >= 4


def test_mmlu_csvs(world):
    letters = {}
    for split, n in (("dev", 5), ("test", 40)):
        df = pd.read_csv(DEMO / f"mmlu/data/{split}/atlas_{split}.csv", header=None, dtype=str, keep_default_na=False)
        assert df.shape == (n, 6)
        assert set(df[5]) <= set("ABCD")
        letters[split] = Counter(df[5])
        for row in df.itertuples(index=False):
            fact = world.by_question[row[0]]
            choices = list(row[1:5])
            assert fact.kb == "atlas" and choices["ABCD".index(row[5])] == fact.object
            assert len(set(choices)) == 4 and all(c in world.pool(fact) for c in choices)
    assert set(letters["test"].values()) == {10}


def test_author_questions_are_valid_specific_and_deterministic(world, chunks):
    for kb, text in chunks:
        questions = author_questions(world, text, n=4, seed=7)
        assert len(questions) == 4 and author_questions(world, text, n=4, seed=7) == questions
        for q in questions:
            fact = world.by_question[q["question"]]
            assert fact in facts_in(world, text)
            assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4 and 0 <= q["answer"] < 4
            assert q["choices"][q["answer"]] == fact.object
            assert all(c in world.pool(fact) for c in q["choices"])
    text = chunks[0][1]
    assert author_questions(world, text, n=4, seed=1) != author_questions(world, text, n=4, seed=2)
    assert author_questions(world, "Nothing known is said here.", n=4) == []


def test_author_questions_rephrase_when_a_chunk_has_few_facts(world):
    fact = world.facts[0]
    questions = author_questions(world, fact.sentence, n=3, seed=0)
    assert [world.by_question[q["question"]] for q in questions] == [fact] * 3
    assert [q["question"] for q in questions] == list(fact.questions[:3])


def test_author_selection_keeps_the_most_specific_distinct_facts(world, chunks):
    text = chunks[3][1]
    questions = author_questions(world, text, n=4, seed=0)
    picked = author_selection(world, questions, keep=2)
    assert len(picked) == 2 and picked == sorted(set(picked)) and all(0 <= i < 4 for i in picked)
    assert len({world.by_question[questions[i]["question"]].id for i in picked}) == 2
    assert min(range(4), key=lambda i: specificity(world, questions[i], i)) in picked
    one_fact = author_questions(world, world.facts[0].sentence, n=3, seed=0)
    longest = sorted(sorted(range(3), key=lambda i: (-len(one_fact[i]["question"]), i))[:2])
    assert author_selection(world, one_fact + [{"question": "Unknown?", "choices": [], "answer": 0}], keep=2) == longest


def test_author_paraphrases_keep_facts_and_differ(world, chunks):
    for kb, text in chunks[::5]:
        facts = facts_in(world, text)
        paraphrases = author_paraphrases(world, text, n=5, seed=11)
        assert author_paraphrases(world, text, n=5, seed=11) == paraphrases
        assert len(set(paraphrases)) == 5 and text not in paraphrases
        for p in paraphrases:
            assert all(f.object in p for f in facts)
            assert facts_in(world, p) == facts
            assert 0.8 < len(p) / len(text) < 1.6  # longer than the chunk: its words avoid the questions' own
        later = author_paraphrases(world, text, n=5, seed=12)
        assert not set(later) & set(paraphrases)
    untouched = "A sentence the world does not know. " + world.facts[0].sentence
    assert all(p.startswith("A sentence the world does not know. ") for p in author_paraphrases(world, untouched, 2, 0))


def test_pretrain_corpus_is_small_disjoint_and_shaped_like_the_eval_prompt(world):
    raw = (DEMO / "pretrain.jsonl").read_text()
    assert len(raw.encode()) < 3_000_000
    texts = [json.loads(line)["text"] for line in raw.splitlines()]
    assert 1500 <= len(texts) <= 2500
    reading = [t for t in texts if "\n\nQuestion: " in t]
    assert len(reading) > 500
    for t in reading[:200]:
        context, qa = t.rsplit("\n\nQuestion: ", 1)
        question, answer = qa.split("\nAnswer: ")
        assert question.endswith("?") and answer and answer in context
    corpus = "\n".join(texts)
    names = {core_name(f.subject) for f in world.facts} | {f.object for f in world.facts if f.domain == "person"}
    leaked = [n for n in names if re.search(r"(?<![\w-])" + re.escape(n) + r"(?![\w-])", corpus)]
    assert leaked == []


def test_load_world_names_the_file_on_bad_input(tmp_path):
    bad = tmp_path / "world.json"
    bad.write_text('{"facts": [{"id": "x"}]}')
    with pytest.raises(KinjectError, match="world.json: not a demo world registry"):
        load_world(bad)
    with pytest.raises(KinjectError, match="file not found"):
        load_world(tmp_path / "missing.json")


def test_wording_is_content_words_compared_by_stem():
    """kinject.demo.wording, by hand: the issue's example shares "winner"; entity slots, digits and function words
    are not wording; an inflection or a derived word shares its stem."""
    from kinject.demo.wording import content_words, shared_wording

    assert shared_wording("the winner of {s} was {o}.", ["Who was the winner of {s}?"]) == ["winner"]
    assert content_words("In 2031, {s} was in {o} with its crew.") == {"crew"}
    assert shared_wording("{s} is in {o}.", ["What is in {s}?", "Where was {s}?"]) == []
    assert shared_wording("{s} ended {o}.", ["With what score did {s} end?"]) == ["ended"]
    assert shared_wording("the first charts of {s}", ["When was {s} first charted?"]) == ["charts", "first"]
    assert shared_wording("{o} isles form {s}.", ["How many islands make up {s}?"]) == []


def test_paraphrases_share_no_wording_with_the_questions_beyond_the_entities(world):
    """Every paraphrase template of a relation against every question template of it (none an article's clause,
    two or more each), and every paraphrase in the registry, wrapper included, against its fact's questions, the
    subject and object taken out of both."""
    from kinject.demo.lexicon import RELATIONS
    from kinject.demo.wording import shared_wording

    for name, relation in RELATIONS.items():
        assert len(relation.paraphrases) >= 2 and not set(relation.paraphrases) & set(relation.clauses), name
        for template in relation.paraphrases:
            assert shared_wording(template, relation.questions) == [], (name, template)
    for fact in world.facts:
        def bare(text):
            return text.replace(fact.subject, " ").replace(core_name(fact.subject), " ").replace(fact.object, " ")

        for paraphrase in fact.paraphrases:
            assert shared_wording(bare(paraphrase), [bare(q) for q in fact.questions]) == [], (fact.id, paraphrase)
    # the articles' own sentences do share it (what the paraphrases were drawn from before): the check can fail
    assert any(shared_wording(bare_sentence, [q]) for f in world.facts[:20]
               for bare_sentence in [f.sentence.replace(f.subject, " ").replace(f.object, " ")] for q in f.questions)
