"""The demo's real model: SmolLM2-135M-Instruct, converted from the GGUF file in its PyPI wheel, has never seen
the fictional facts (Base near chance) and reads them from retrieved chunks (RAG far ahead): the effect the
study measures, on a small slice of the demo (evaluation only: the demo's own lm-eval tasks, 0-shot)."""

import json

import pytest

from kinject.evaluation.evaluate import Run, run_lmeval
from kinject.paths import LMEVAL_TASK_DIR
from kinject.precision import resolve
from kinject.settings import load_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["current_events", "atlas"])
def test_rag_beats_base_by_a_wide_margin(smollm2, demo_tasks, tmp_path, task):
    config = load_config(demo_tasks / "config" / "demo.yaml")
    runs = [Run(demo_tasks / LMEVAL_TASK_DIR.format(task=task, format="options", k=k), f"kinject_{task}_options_k{k}",
                tmp_path / f"k{k}.json", meta={"method": "rag" if k else "base"}) for k in (0, 1)]
    base, rag = run_lmeval(smollm2, runs, shots=0, precision=config["precision"], seed=config["seed"])
    chance = 0.25  # four options
    assert base["accuracy"] < chance + 0.1  # it cannot know a fictional world
    assert rag["accuracy"] > base["accuracy"] + 0.3  # one retrieved chunk and it reads the answer
    assert base["n_questions"] == rag["n_questions"] >= 40 and rag["n_truncated"] == 0
    written = json.loads((tmp_path / "k1.json").read_text())  # what the demo's auto resolved to on this CPU
    assert written["precision_requested"] == config["precision"] == "auto"
    assert written["precision"] == resolve("auto", "cpu").name and written["device"] == "cpu"
