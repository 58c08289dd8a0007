"""The steps-matched control (method steps, kinject.training.matched): set 0's data for as many optimizer steps and
tokens as set k's run, its grid cells, its comparisons and its trend."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer, Trainer

from kinject.grid import cells, control_scores, finetuned_checkpoints
from kinject.io import write_parquet
from kinject.planning.power import family
from kinject.reporting.comparisons import comparisons, paraphrase_trends
from kinject.reporting.report import group_table, reported
from kinject.settings import load_config
from kinject.training import finetune
from kinject.training.checkpoints import TRAINING_FILE
from kinject.training.matched import cycle_blocks, optimizer_steps
from kinject.training.methods import METHODS, by_column
from kinject.training.models import build_tiny_model

pytestmark = pytest.mark.usefixtures("hf_offline")

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = [f"Harbour {i} of Velm ships {['salt', 'tin', 'wool'][i % 3]} each spring." for i in range(6)]
# set 2: each chunk and two paraphrases of it (as kinject.qa.paraphrases writes a set: originals first)
SET2 = CHUNKS + [f"Each spring harbour {i} of Velm sends out {['salt', 'tin', 'wool'][i % 3]}." for i in range(6)] \
    + [f"{['Salt', 'Tin', 'Wool'][i % 3]} leaves Velm's harbour {i} every spring." for i in range(6)]


@pytest.mark.parametrize("blocks, per_device, world, accumulation, epochs, steps", [
    (10, 4, 1, 2, 3, 6),   # 3 micro-batches (4, 4, 2) an epoch, 2 a step: 2 steps (the last one short) x 3 epochs
    (10, 8, 1, 1, 2, 4),   # 2 micro-batches, each a step
    (10, 4, 2, 1, 1, 2),   # 2 processes: ceil(10 / 8) = 2 micro-batches each
    (3, 8, 1, 8, 5, 5),    # fewer blocks than a batch: one (short) step an epoch
    (64, 8, 1, 8, 1, 1),
])
def test_optimizer_steps_counts_as_the_trainer_does(blocks, per_device, world, accumulation, epochs, steps):
    assert optimizer_steps(blocks, epochs=epochs, per_device_batch_size=per_device, world_size=world,
                           accumulation=accumulation) == steps


def test_cycle_blocks_repeats_set_0_in_order_to_the_matched_length():
    assert cycle_blocks([[1], [2], [3]], 7) == [[1], [2], [3], [1], [2], [3], [1]]
    assert cycle_blocks([[1], [2], [3]], 2) == [[1], [2]]
    with pytest.raises(ValueError, match="no blocks"):
        cycle_blocks([], 3)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "base"
    build_tiny_model(SET2, out, vocab_size=200, hidden_size=32, num_layers=2, num_heads=2,
                     intermediate_size=64, max_position_embeddings=64, seed=0)
    return out


def test_the_control_trains_exactly_set_ks_steps_and_tokens_on_set_0(base, tmp_path, monkeypatch):
    """Hand-worked: the blocks of each set from the tokenizer's own token counts (each chunk wrapped in BOS/EOS,
    cut into blocks of 16), then blocks / batch x epochs; the set-2 run and the control both stop there, and the
    control has read as many tokens, every one of them from set 0's chunks."""
    tok = AutoTokenizer.from_pretrained(base)

    def hand_blocks(texts):
        stream = sum(len([t for t in tok(x, add_special_tokens=False)["input_ids"]]) + 2 for x in texts)
        return stream // 16

    blocks_0, blocks_2 = hand_blocks(CHUNKS), hand_blocks(SET2)
    assert blocks_2 > 2 * blocks_0 and blocks_0 > 2  # set 2 is three times the text
    steps = 2 * math.ceil(math.ceil(blocks_2 / 2) / 2)  # micro-batches of 2, 2 a step (batch 4), 2 epochs
    seen = []

    def counting(self, model, inputs, *args, **kwargs):
        seen.append(inputs["input_ids"].clone())
        return training_step(self, model, inputs, *args, **kwargs)

    training_step = Trainer.training_step
    monkeypatch.setattr(Trainer, "training_step", counting)
    write_parquet(tmp_path / "k0.parquet", pd.DataFrame({"text": CHUNKS}))
    write_parquet(tmp_path / "k2.parquet", pd.DataFrame({"text": SET2}))
    common = ["--base", str(base), "--lr", "1e-3", "--epochs", "2", "--batch-size", "4", "--per-device-batch-size",
              "2", "--block-size", "16"]
    finetune.main([*common, "--train", str(tmp_path / "k2.parquet"), "--out", str(tmp_path / "par2"),
                   "--loss-csv", str(tmp_path / "par2.csv"), "--work-dir", str(tmp_path / "w2")])
    par_tokens, seen = sum(x.numel() for x in seen), []
    finetune.main([*common, "--train", str(tmp_path / "k0.parquet"), "--match-steps-of", str(tmp_path / "k2.parquet"),
                   "--out", str(tmp_path / "steps2"), "--loss-csv", str(tmp_path / "steps2.csv"),
                   "--work-dir", str(tmp_path / "ws")])
    par, control = pd.read_csv(tmp_path / "par2.csv"), pd.read_csv(tmp_path / "steps2.csv")
    assert par["step"].tolist() == control["step"].tolist() == list(range(1, steps + 1))
    assert control["epoch"].iloc[-1] == pytest.approx(2.0)  # its epochs: set 2's length, so the same boundaries
    assert sum(x.numel() for x in seen) == par_tokens == 2 * blocks_2 * 16
    set_0 = {tuple(b) for b in finetune.tokenize_blocks(tok, CHUNKS, 16)}
    assert {tuple(row) for x in seen for row in x.tolist()} == set_0  # every block of set 0, and only those
    record = json.loads((tmp_path / "steps2" / TRAINING_FILE).read_text())
    assert record["matched"] == {"blocks": blocks_2, "steps": steps, "tokens": 2 * blocks_2 * 16}
    assert "matched" not in json.loads((tmp_path / "par2" / TRAINING_FILE).read_text())


def test_the_demo_grid_has_the_control_of_set_4_only_where_set_4_is():
    config = load_config(ROOT / "config" / "demo.yaml")
    steps = [c for c in cells(config) if c.method.startswith("steps")]
    assert [(c.task, c.method, c.k) for c in steps] == [("current_events", "steps-p4", 0)]
    assert {"model": "smollm2-135m", "task": "current_events", "method": "steps", "p": 4} in finetuned_checkpoints(config)
    extended = load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")
    assert not any("steps-p" in path for path in control_scores(extended))  # no forgetting row of its own


def _records(seed=3, n=40):
    """Hand-built per-question records of one setting: Base, FT, FT-par4, FT-steps4, FT-par4+RAG at K 1 and 2."""
    rng = np.random.default_rng(seed)
    rows = []
    accuracy = {("base", 0, 0): 0.3, ("ft", 0, 0): 0.4, ("ft", 4, 0): 0.7, ("steps", 4, 0): 0.5,
                ("ftrag", 4, 1): 0.8, ("ftrag", 4, 2): 0.75}
    for (method, p, k), acc in accuracy.items():
        for q in range(n):
            rows.append({"group": "g", "model": "m", "task": "t", "format": "options", "shots": 0, "method": method,
                         "paraphrase_set": None if method == "base" else p, "k": k, "question_id": f"q{q}",
                         "correct": bool(rng.random() < acc), "cluster": f"chunk{q // 2}"})
    records = pd.DataFrame(rows)
    records["paraphrase_set"] = records["paraphrase_set"].astype("Int64")
    return records


def test_the_comparisons_pair_the_control_with_ft_par_and_with_ft():
    rows, choices = reported(_records(), seed=0)
    table = comparisons(rows, seed=0).set_index("contrast")
    assert {"FT-par4 vs FT-steps4", "FT-steps4 vs FT"} <= set(table.index)
    wide = rows.pivot(index="question_id", columns="column", values="correct").astype(bool)
    net = table.loc["FT-par4 vs FT-steps4"]
    assert net["delta"] == pytest.approx(wide["FT-par4"].mean() - wide["FT-steps4"].mean())
    assert (net["a_only"], net["b_only"]) == ((wide["FT-par4"] & ~wide["FT-steps4"]).sum(),
                                              (~wide["FT-par4"] & wide["FT-steps4"]).sum())
    assert table.loc["FT-steps4 vs FT", "delta"] == pytest.approx(wide["FT-steps4"].mean() - wide["FT"].mean())
    # the control has no FT+RAG and is compared with nothing else
    assert not [c for c in table.index if "FT-steps" in c and c not in ("FT-par4 vs FT-steps4", "FT-steps4 vs FT")]
    columns = list(group_table(rows, choices, "g", 0).columns)
    assert columns[:5] == ["task", "format", "model", "Base", "FT"]
    assert columns.index("FT-steps4") == columns.index("FT-par4") + 1  # beside FT-par4


def test_the_trend_table_has_the_controls_slope_from_fts_set_0():
    trends = paraphrase_trends(_records()).set_index("method")
    assert trends.loc["ft", "sets"] == trends.loc["steps", "sets"] == "0 4"
    assert trends.loc["steps", "accuracy_first"] == trends.loc["ft", "accuracy_first"]  # FT itself
    assert trends.loc["steps", "accuracy_last"] != trends.loc["ft", "accuracy_last"]


def test_the_control_is_a_registered_method_that_reuses_fulls_search():
    steps, full = METHODS["steps"], METHODS["full"]
    assert (steps.label, steps.prefix, steps.matches, steps.rag) == ("FT-steps", "steps", "full", False)
    assert steps.chosen == full.chosen and steps.column(4) == "FT-steps4" and full.column(4) == "FT-par4"
    assert steps.loss == "results/finetune/{model}/{task}/steps/k{k}/train_loss.csv"


def test_a_column_names_one_method_and_set_and_parses_back():
    # Method.set_of is Method.column's inverse for every registered method, and no other method claims the column
    # (labels share openings: FT, FT-steps; PIT, PIT-mix; QA-SFT holds a hyphen)
    for m in METHODS.values():
        for p in ([4000, 16000] if m.unit else [0, 2, 10]):
            column = m.column(p)
            assert m.set_of(column) == p, column
            assert by_column(column) == (m, p), column
            assert [o.name for o in METHODS.values() if o.set_of(column) is not None] == [m.name], column
    for other in ("Base", "RAG", "FT-par4+RAG", "RAG (bm25)", "FT-par", "FT-steps-par4", "SynCPT-4000"):
        assert by_column(other) is None, other
    assert METHODS["full"].sets_in({"FT-par10", "FT", "FT-par2+RAG", "FT-steps4", "FT-par2"}) == [0, 2, 10]
    assert family("FT-par10+RAG vs RAG") == "FT-par+RAG vs RAG"
    assert family("FT-par10 vs FT-steps10") == "FT-par vs FT-steps"
    assert family("SynCPT-16000tok vs FT") == "SynCPT vs FT"
    assert family("RAG (bm25) vs RAG") == "RAG (bm25) vs RAG"
    assert family("QA-SFT-par2+RAG vs QA-SFT") == "QA-SFT-par+RAG vs QA-SFT"
