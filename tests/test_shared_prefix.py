"""Shared-prefix scoring (lm-eval model kinject-hf) returns what stock lm-eval returns, request by request, on
the demo's real tasks (current events 0-shot, atlas 0- and 5-shot, K = 0..3) for both demo models: the tiny
Llama at the demo's size on every question (atlas in both scoring formats), SmolLM2-135M (pretrained,
converted from its GGUF file by rule convert_gguf) on a slice."""

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_demo

from kinject.evaluation.evaluate import lmeval_environment, load_lm, score_tasks
from kinject.paths import LMEVAL_TASK_DIR

pytestmark = pytest.mark.usefixtures("hf_offline")

TOLERANCE = 1e-4  # fp32 log-likelihoods: one pass over the prompt vs its cached keys and values
KS = range(4)


def tasks(workdir, task, fmt="options"):
    """(folder, lm-eval task name) of ``task`` in format ``fmt`` for K = 0..3."""
    return [(workdir / LMEVAL_TASK_DIR.format(task=task, format=fmt, k=k), f"kinject_{task}_{fmt}_k{k}")
            for k in KS]


@pytest.fixture(scope="module")
def demo_tiny_llama(demo_tasks, tmp_path_factory):
    """A tiny Llama of the test suite's size (.test/config/tiny_llama.yaml), its tokenizer trained on the demo's
    chunks, not pre-trained (random weights score as well as any for an equality test)."""
    from kinject.training.models import build_tiny_model

    build = tiny_demo(demo_tasks)["models"]["tiny-llama"]["build"]
    size = {key: value for key, value in build.items() if not key.startswith("pretrain")}
    corpus = [text for task in ("atlas", "current_events")
              for text in pd.read_parquet(demo_tasks / "results" / task / "chunks.parquet")["text"]]
    out = tmp_path_factory.mktemp("tiny-llama") / "base"
    build_tiny_model(corpus, out, seed=0, **size)
    return out


def score_both(model, runs, *, shots, limit=None, **model_args):
    """The same tasks scored by stock lm-eval scoring and by the shared-prefix path: {shared: (lm, output)}."""
    out = {}
    for shared in (False, True):
        with lmeval_environment(model):
            lm = load_lm(model, precision="fp32", batch_size=8, device="cpu", shared_prefix=shared,
                         max_truncated_fraction=1.0, **model_args)
            out[shared] = lm, score_tasks(lm, [d for d, _ in runs], [n for _, n in runs], shots=shots, seed=1234,
                                          limit=limit, log_samples=True)
    return out


def assert_same(scored, runs) -> float:
    """Per question: same requests, same chosen option, same greedy flags, log-likelihoods within TOLERANCE.
    Returns the largest difference seen."""
    (stock_lm, stock), (shared_lm, shared) = scored[False], scored[True]
    assert stock_lm.scorer == "hf" and shared_lm.scorer == "kinject-hf"
    worst = 0.0
    for _, name in runs:
        assert len(stock["samples"][name]) == len(shared["samples"][name]) > 0
        for a, b in zip(stock["samples"][name], shared["samples"][name], strict=True):
            assert (a["doc_id"], a["arguments"]) == (b["doc_id"], b["arguments"])
            ll_a, greedy_a = np.array(a["filtered_resps"], dtype=float).T
            ll_b, greedy_b = np.array(b["filtered_resps"], dtype=float).T
            assert np.argmax(ll_a) == np.argmax(ll_b) and a["acc"] == b["acc"], (name, a["doc_id"])
            assert (greedy_a == greedy_b).all(), (name, a["doc_id"])
            worst = max(worst, float(np.abs(ll_a - ll_b).max()))
        assert stock["results"][name]["acc,none"] == shared["results"][name]["acc,none"]
        assert stock_lm.truncation[name] == shared_lm.truncation[name]
    assert worst < TOLERANCE
    return worst


def forward_tokens(scored) -> tuple[int, int]:
    """Positions through the model (padding included), stock and shared-prefix."""
    return scored[False][0].token_counts["forward_tokens"], scored[True][0].token_counts["forward_tokens"]


def test_tiny_llama_every_demo_question(demo_tasks, demo_tiny_llama):
    news, atlas = tasks(demo_tasks, "current_events"), tasks(demo_tasks, "atlas")
    zero = score_both(demo_tiny_llama, news + atlas, shots=0)
    assert_same(zero, news + atlas)
    stock, shared = forward_tokens(zero)
    assert shared < stock / 2  # four options: each prompt once instead of four times
    assert [zero[True][0].truncation[n]["n_questions"] for _, n in news + atlas] == [68] * 4 + [40] * 4
    five = score_both(demo_tiny_llama, atlas, shots=5)
    assert_same(five, atlas)
    letters = tasks(demo_tasks, "atlas", "letters")  # one-token continuations: A, B, C, D
    for shots in (0, 5):
        assert_same(score_both(demo_tiny_llama, letters, shots=shots), letters)


def test_smollm2_demo_slice(demo_tasks, smollm2):
    """The real model on two questions per task; 5-shot with max_length 512, so that lm-eval's left
    truncation (and the grouping of truncated requests by what is left of their context) is exercised too."""
    news, atlas = tasks(demo_tasks, "current_events"), tasks(demo_tasks, "atlas")
    zero = score_both(smollm2, news + atlas, shots=0, limit=2)
    assert_same(zero, news + atlas)
    stock, shared = forward_tokens(zero)
    assert shared < stock / 2
    five = score_both(smollm2, atlas, shots=5, limit=2, max_length=512)
    assert_same(five, atlas)
    assert sum(five[True][0].truncation[n]["n_requests_truncated"] for _, n in atlas) > 0
