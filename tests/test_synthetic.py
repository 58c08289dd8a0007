"""Synthetic continued pre-training (EntiGraph; kinject.qa.entigraph, kinject.training.synthetic): the entity calls
keep each name once and quarantine a reply with fewer than two; the combinations asked are seeded and capped, and the
texts dealt round-robin over the chunks; a budget is the shortest prefix of the texts holding its tokens, nested in
the next, and one larger than the texts is one line; the demo's author answers both calls from its world; the grid,
the columns, the comparisons and the trend get the arm; the plan prices its calls and training; bad configs are one
line. Its end-to-end run on the tiny Llama is in tests/test_qa_sft.py (one Snakemake run for the arms)."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import bad_extended_config

from kinject.demo.author import author_entities, author_relation, load_world
from kinject.errors import KinjectError
from kinject.grid import cells
from kinject.io import write_parquet
from kinject.qa import entigraph
from kinject.qa.llm import LLMClient, ResponseCache
from kinject.reporting.comparisons import contrasts, paraphrase_trends
from kinject.settings import load_config
from kinject.training import synthetic
from kinject.training.blocks import load_tokenizer
from kinject.training.models import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = pd.DataFrame({"chunk_id": ["c0", "c1", "c2"],
                       "text": ["Ostra opened the Varro canal in 1903 with the mayor Ilse Brun and the engineer Tavi Orm.",
                                "The Kell bridge links Ostra and Varro.", "A chunk about nothing in particular."]})
NAMES = {"c0": ["Ostra", "Varro canal", "1903", "ostra ", "Ilse Brun", "Tavi Orm"], "c1": ["Kell bridge", "Ostra"],
         "c2": ["nothing"]}  # c0 repeats Ostra (case and space aside); c2 has one entity: quarantined


def backend(request):
    """Entities by chunk (from its text), and a relation text naming the entities, but an empty one for a pair with
    Tavi Orm (invalid: asked again, then quarantined)."""
    prompt = request["messages"][-1]["content"]
    text = prompt.split("\n\nDocument:\n", 1)[1]
    chunk = CHUNKS.loc[CHUNKS["text"] == text, "chunk_id"].item()
    if prompt.startswith("You are a knowledge analyst. Read"):
        return json.dumps({"summary": "s", "entities": NAMES[chunk]}), {"completion_tokens": 9}
    names = re.search(r"mentions: (.*)\.\nWrite", prompt)[1]
    return json.dumps({"text": "" if "Tavi Orm" in names else f"On {names} in {chunk}."}), {"completion_tokens": 9}


def client(tmp_path):
    return LLMClient(model="m", cache=ResponseCache(tmp_path / "cache"), mode="live", invalid_retries=1,
                     backend=backend)


@pytest.fixture
def corpus(tmp_path):
    chunks = tmp_path / "chunks.parquet"
    write_parquet(chunks, CHUNKS)
    summary = entigraph.entities(chunks, tmp_path / "entities.parquet", tmp_path / "eq.jsonl", client(tmp_path),
                                 seed=7)
    assert summary == "7 entities of 2 chunks, 1 calls quarantined"
    return chunks, tmp_path / "entities.parquet"


def test_entities_are_kept_once_and_a_reply_with_fewer_than_two_is_quarantined(corpus, tmp_path):
    ents = pd.read_parquet(corpus[1])
    assert ents.groupby("chunk_id")["entity"].apply(list).to_dict() == {
        "c0": ["Ostra", "Varro canal", "1903", "Ilse Brun", "Tavi Orm"], "c1": ["Kell bridge", "Ostra"]}
    (quarantined,) = [json.loads(line) for line in (tmp_path / "eq.jsonl").read_text().splitlines()]
    assert "expected at least two entities, got 1" in json.dumps(quarantined)


def test_the_combinations_are_seeded_and_capped_and_the_texts_dealt_round_robin(corpus, tmp_path):
    names = ["a", "b", "c", "d", "e"]
    picked = entigraph.combinations("c0", names, pairs=4, triples=2, seed=7)
    assert [len(c) for c in picked] == [2] * 4 + [3] * 2 and len(set(picked)) == 6
    assert picked == entigraph.combinations("c0", names, pairs=4, triples=2, seed=7)  # a pure function
    assert picked != entigraph.combinations("c0", names, pairs=4, triples=2, seed=8)
    assert len(entigraph.combinations("c1", ["a", "b"], pairs=4, triples=2, seed=7)) == 1  # one pair, no triple
    out = tmp_path / "texts.parquet"
    summary = entigraph.relation_texts(*corpus, out, tmp_path / "tq.jsonl", client(tmp_path), pairs=5, triples=1,
                                       seed=7)
    texts = pd.read_parquet(out)
    planned = entigraph.plan_calls(CHUNKS, pd.read_parquet(corpus[1]), pairs=5, triples=1, seed=7)
    tavi = sum("Tavi Orm" in p["entities"] for p in planned)  # c0's calls naming him were quarantined
    assert len(planned) == 5 + 1 + 1 and len(texts) == len(planned) - tavi
    assert summary.startswith(f"{len(texts)} synthetic texts about 2 chunks")
    assert len((tmp_path / "tq.jsonl").read_text().splitlines()) == tavi
    # round-robin: each chunk's first text before any chunk's second; c1 has one pair, so the rest are c0's
    order = entigraph.dealt_order(planned, 7)
    ranks = [planned[i]["rank"] for i in order]
    assert ranks == sorted(ranks) and {planned[i]["chunk_id"] for i in order[:2]} == {"c0", "c1"}
    assert texts["order"].is_monotonic_increasing and set(texts["chunk_id"]) == {"c0", "c1"}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "base"
    build_tiny_model(list(CHUNKS["text"]) * 3, out, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                     intermediate_size=64, max_position_embeddings=128, seed=0)
    return out


def test_a_budget_is_the_shortest_prefix_holding_its_tokens_and_nested_in_a_larger(tmp_path, tokenizer_dir):
    chunks = tmp_path / "chunks.parquet"
    write_parquet(chunks, CHUNKS)
    texts = pd.DataFrame({"chunk_id": ["c0", "c1"] * 10, "order": range(20), "entities": "x | y", "size": 2,
                          "text": [f"Text {i} says the Kell bridge links Ostra and Varro since {1900 + i}." for i in
                                   range(20)]})
    write_parquet(tmp_path / "texts.parquet", texts.iloc[::-1])  # the file's row order does not matter: `order` does
    counts = [len(load_tokenizer(tokenizer_dir)(t, add_special_tokens=False)["input_ids"]) for t in texts["text"]]
    held = {}
    for budget in (50, 200):
        out = tmp_path / f"k{budget}.parquet"
        summary = synthetic.build_set(chunks, tmp_path / "texts.parquet", tokenizer_dir, out, budget=budget)
        data = pd.read_parquet(out)
        assert data["source"].tolist()[:3] == ["chunk"] * 3 and data["text"].tolist()[:3] == CHUNKS["text"].tolist()
        kept = data[data["source"] == "synthetic"]
        n = len(kept)
        assert kept["text"].tolist() == texts["text"].tolist()[:n]
        assert sum(counts[:n]) >= budget > sum(counts[:n - 1])  # the shortest prefix
        assert summary == f"budget {budget}: 3 chunks + {n} synthetic texts ({sum(counts[:n])} tokens)"
        held[budget] = kept["text"].tolist()
    assert held[200][:len(held[50])] == held[50] and len(held[200]) > len(held[50])
    with pytest.raises(KinjectError, match=rf"texts\.parquet: synthetic\.tokens: budget 5000 is more than the "
                                           rf"{sum(counts)} tokens of all 20 synthetic texts"):
        synthetic.build_set(chunks, tmp_path / "texts.parquet", tokenizer_dir, tmp_path / "big.parquet", budget=5000)
    assert not (tmp_path / "big.parquet").exists()


def test_the_demo_author_names_a_chunks_facts_and_states_them_in_other_words():
    world = load_world(ROOT / "resources" / "demo" / "world.json")
    a, b = [f for f in world.facts if f.kb == "current_events"][:2]
    text = f"{a.sentence} {b.sentence}"
    names = author_entities(world, text)["entities"]
    assert names == list(dict.fromkeys([a.subject, a.object, b.subject, b.object]))
    passage = author_relation(world, text, [a.subject, a.object], seed=1234)
    # the fact of both entities first, in one of its paraphrase renderings (kinject.demo.wording: none shares a
    # question's wording), never the chunk's own sentence
    assert any(passage.startswith(p[0].upper() + p[1:]) for p in a.paraphrases)
    assert a.object in passage and a.sentence not in passage
    assert passage == author_relation(world, text, [a.subject, a.object], seed=1234)


def extended():
    return load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")


def test_the_extended_demo_has_a_budget_curve_with_its_comparisons_and_trend():
    config = extended()
    methods = {c.method for c in cells(config) if c.task == "current_events" and c.method.startswith("syn")}
    assert methods == {"syn-p4000", "syn-p16000", "synrag-p16000",
                       *(f"synrag-{r}-p16000" for r in ("bm25", "hybrid", "oracle"))}
    columns = ["Base", "RAG", "FT", "FT-par2", "SynCPT-4000tok", "SynCPT-16000tok", "SynCPT-16000tok+RAG"]
    pairs = set(contrasts(columns))
    assert {("SynCPT-4000tok", "FT"), ("SynCPT-16000tok", "Base"), ("RAG", "SynCPT-16000tok"),
            ("SynCPT-16000tok+RAG", "RAG")} <= pairs
    assert not any(a.startswith("SynCPT") and b.startswith("SynCPT") for a, b in pairs)
    # the trend: from FT's set 0 (no synthetic text), per 1,000 tokens; a logit fit by statsmodels on those x
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    rows = [{"group": "g", "model": "m", "task": "t", "format": "options", "shots": 0, "method": method, "k": 0,
             "paraphrase_set": p, "question_id": f"q{i}", "cluster": f"c{i // 2}", "correct": int(rng.random() < acc)}
            for method, p, acc in (("ft", 0, .3), ("syn", 4000, .45), ("syn", 16000, .6)) for i in range(60)]
    trend = paraphrase_trends(pd.DataFrame(rows)).set_index("method").loc["syn"]
    assert trend["sets"] == "0 4000 16000" and trend["note"].endswith("per 1,000 tok, from FT's set 0")
    frame = pd.DataFrame(rows)
    syn = pd.concat([frame[frame["method"] == "ft"], frame[frame["method"] == "syn"]])
    fit = sm.Logit(syn["correct"].astype(float), sm.add_constant(syn["paraphrase_set"] / 1000)).fit(
        disp=0, cov_type="cluster", cov_kwds={"groups": pd.factorize(syn["cluster"])[0]})
    assert trend["slope"] == pytest.approx(fit.params.iloc[1])


def test_the_plan_prices_the_calls_and_budgets_hand_worked_for_the_paper_grid(tmp_path):
    from kinject.planning.plan import make_plan

    config = load_config(ROOT / "config.yaml")
    config["tasks"]["current_events"]["finetune_methods"] = ["full", "synthetic"]
    config["finetune"]["synthetic"] = {"lr": 1e-5, "search_lr": [1e-5, 3e-5]}
    config["synthetic"] = {"tokens": [100_000, 500_000], "pairs_per_chunk": 10, "triples_per_chunk": 2}
    (tmp_path / "profiles/slurm").mkdir(parents=True)
    (tmp_path / "profiles/slurm/accelerate_fsdp.yaml").write_text((ROOT / "profiles/slurm/accelerate_fsdp.yaml")
                                                                   .read_text())
    plan = make_plan(config, tmp_path)
    llm = {r["rule"]: r for r in plan["llm"]["rules"]}
    chunks, tokens = 455, 200  # config.yaml's plan.corpus: current events' chunks, the default's tokens per chunk
    assert llm["synthetic_entities"]["calls"] == chunks and llm["synthetic_texts"]["calls"] == chunks * 12
    assert llm["synthetic_texts"]["output_tokens"] == chunks * 12 * 150  # plan.llm_reply_tokens.relation
    assert llm["synthetic_entities"]["output_tokens"] == chunks * 120
    rules = plan["rules"]
    assert rules["hparam_trial_synthetic"]["jobs"] == 3 * 2  # 3 models x 2 rates, on the smallest budget
    assert rules["finetune_synthetic"]["jobs"] == 3  # the larger budget; the smaller is the chosen trial's
    jobs = {(j["rule"], j["job"]): j for j in plan["jobs"]}
    syn = jobs[("finetune_synthetic", "mistral-7b current_events k500000")]
    ft = jobs[("finetune", "mistral-7b current_events k1")]  # set 1: the chunks and one paraphrase each
    # both are linear in their tokens (same model, epochs, batch): chunks + 500,000 synthetic tokens (and BOS/EOS per
    # 150-token text) against twice the chunks
    ratio = (chunks * (tokens + 2) + 500_000 * (1 + 2 / 150)) / (2 * chunks * (tokens + 2))
    assert syn["compute_gpu_hours"] / ft["compute_gpu_hours"] == pytest.approx(ratio, rel=1e-9)
    trial = jobs[("hparam_trial_synthetic", "mistral-7b current_events")]  # on the smallest budget, 100,000
    full_trial = jobs[("hparam_trial", "mistral-7b current_events")]  # on set 0, the chunks: the same validation
    validation = trial["compute_gpu_hours"] - ft["compute_gpu_hours"] * (chunks * (tokens + 2) + 100_000 * (
        1 + 2 / 150)) / (2 * chunks * (tokens + 2))
    assert full_trial["compute_gpu_hours"] - ft["compute_gpu_hours"] / 2 == pytest.approx(validation, rel=1e-9)
    assert not [w for w in plan["warnings"] if w.startswith("synthetic_texts")]  # 455 x 12 x 150 = 819,000
    config["synthetic"]["tokens"] = [1_000_000, 2_000_000]
    config["synthetic"]["pairs_per_chunk"] = 2
    (warning,) = [w for w in make_plan(config, tmp_path)["warnings"] if w.startswith("synthetic_texts")]
    assert f"2000000, is more than the ~{chunks * 4 * 150:,} tokens its {chunks * 4} relation texts" in warning


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["synthetic"].update(tokens=[]),
     r"tasks\.current_events\.finetune_methods trains synthetic, but synthetic\.tokens \(its token budgets\) is "
     r"missing$"),
    (lambda c: c["synthetic"].update(tokens=[0, 4000]),
     r"0 is less than the minimum of 1 On instance\['synthetic'\]\['tokens'\]\[0\]"),  # the schema's line
    (lambda c: c["synthetic"].update(pairs_per_chunk=0, triples_per_chunk=0),
     r"synthetic\.pairs_per_chunk and synthetic\.triples_per_chunk are both 0"),
    (lambda c: c["finetune"]["synthetic"].pop("search_lr"),
     r"fine-tunes with synthetic and has validation, but finetune\.synthetic\.search_lr is missing"),
])
def test_a_bad_synthetic_config_is_one_line(tmp_path, edit, message):
    assert re.search(message, bad_extended_config(tmp_path, edit))


def test_the_plan_tokens_of_a_budget_are_the_chunks_and_the_budget():
    config = extended()
    corpus = {"chunks": 35, "tokens_per_chunk": 120}
    got = synthetic.training_tokens(config, "current_events", corpus, Path("/nonexistent"), 4000)
    assert got == pytest.approx(35 * 122 + 4000 * (1 + 2 / 150))
    assert math.isclose(synthetic.search_set(config), 4000) and synthetic.sets(config, {}, rag=True) == [16000]
