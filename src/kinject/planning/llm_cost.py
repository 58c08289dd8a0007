"""The LLM calls, tokens and cost of question and paraphrase generation, following the code's calls
(``kinject.qa.sets``, ``kinject.qa.paraphrases``) and priced from ``plan.llm_prices``."""

from __future__ import annotations

import math

from kinject.grid import ft_methods, trains_on_pairs
from kinject.planning.corpus import Corpus, missing
from kinject.qa import prompts
from kinject.qa.llm import (
    DEFAULT_MAX_TOKENS,
    entities_max_tokens,
    paraphrase_max_tokens,
    questions_max_tokens,
    relation_max_tokens,
    selection_max_tokens,
)
from kinject.training.qa_sft import extra_per_chunk


def template_tokens(messages: list[dict], chars_per_token: float) -> int:
    return math.ceil(sum(len(m["content"]) for m in messages) / chars_per_token)


def llm_usage(config: dict, corpora: dict[str, Corpus]) -> list[dict]:
    """Calls, prompt and reply tokens of each LLM rule, following the code's call structure: per chunk one
    question call and one selection call (kinject.qa.sets), one more question call where QA-SFT's pairs ask
    finetune.qa_sft.qa_per_chunk extra ones (rule qa_sft_extra), ceil(count / per_call) paraphrase calls
    (kinject.qa.paraphrases), one call per validation chunk; where a task trains synthetic CPT, one entity call and
    synthetic.pairs_per_chunk + triples_per_chunk relation calls (at most: a chunk with few entities has fewer
    combinations) per chunk (kinject.qa.entigraph). A prompt is its template's characters / plan.chars_per_token
    plus the chunk's tokens; a paraphrase is about as long as its chunk; a question reply, a selection reply, an
    entity reply and a relation text are plan.llm_reply_tokens.

    The worst case is what the requests' max_tokens allow (the bounds kinject.qa.llm computes from llm.max_tokens):
    every reply as long as its bound, every call asked 1 + llm.invalid_retries times."""
    cpt = config["plan"]["chars_per_token"]
    reply = config["plan"]["llm_reply_tokens"]
    bound = {**DEFAULT_MAX_TOKENS, **config["llm"].get("max_tokens", {})}
    attempts = 1 + config["llm"].get("invalid_retries", 0)
    count, per_call = config["paraphrases"]["count"], config["paraphrases"]["per_call"]
    rows = []
    for task, cfg in config["tasks"].items():
        corpus, q = corpora[task], cfg["questions"]
        # (rule, calls, template tokens, chunk tokens in the prompt?, reply tokens per call: fixed, in chunk
        # lengths, the calls' max_tokens given a chunk's characters)
        planned = []
        if q["source"] == "generated":
            per_chunk, keep = q["per_chunk"], q["keep"]
            planned.append(("generate_questions", 1, template_tokens(prompts.questions_messages("", per_chunk), cpt),
                            True, per_chunk * reply["question"], 0,
                            lambda chars, n=per_chunk: questions_max_tokens(bound, n)))
            extra = extra_per_chunk(config)
            if extra and trains_on_pairs(config, cfg):
                planned.append(("qa_sft_extra", 1, template_tokens(prompts.questions_messages("", extra), cpt), True,
                                extra * reply["question"], 0, lambda chars, n=extra: questions_max_tokens(bound, n)))
            if per_chunk > keep:  # the listing of the candidates is in the prompt
                planned.append(("select_questions", 1, template_tokens(prompts.select_messages([], keep), cpt)
                                + per_chunk * reply["question"], False, reply["selection"], 0,
                                lambda chars: selection_max_tokens(bound)))
        if max(cfg["paraphrase_sets"]) > 0:
            sizes = [min(per_call, count - i) for i in range(0, count, per_call)]  # as kinject.qa.paraphrases asks
            planned.append(("paraphrase_chunks", len(sizes),
                            template_tokens(prompts.paraphrase_messages("", per_call), cpt), True, 0,
                            count / len(sizes),
                            lambda chars, sizes=sizes: sum(paraphrase_max_tokens(bound, chars, n) for n in sizes)))
        if "synthetic" in ft_methods(config, cfg):  # synthetic CPT's corpus (kinject.qa.entigraph)
            syn = config["synthetic"]
            planned.append(("synthetic_entities", 1, template_tokens(prompts.entities_messages(""), cpt), True,
                            reply["entities"], 0, lambda chars: entities_max_tokens(bound)))
            combos = syn["pairs_per_chunk"] + syn["triples_per_chunk"]  # at most: a chunk may have fewer
            listing = template_tokens(prompts.relation_messages("", ["entity"] * 3), cpt)
            planned.append(("synthetic_texts", combos, listing, True, reply["relation"], 0,
                            lambda chars, n=combos: n * relation_max_tokens(bound)))
        if "validation" in cfg:
            val = cfg["validation"]
            planned.append(("validation_paraphrases", 1, template_tokens(prompts.paraphrase_messages("", val["paraphrases"]),
                                                                         cpt), True, 0, val["paraphrases"],
                            lambda chars, n=val["paraphrases"]: paraphrase_max_tokens(bound, chars, n)))
        for rule, per_chunk_calls, template, with_chunk, reply_fixed, reply_chunks, max_tokens in planned:
            chunks, tokens = corpus["chunks"], corpus["tokens_per_chunk"]
            if chunks is None or tokens is None:
                rows.append({"rule": rule, "task": task, "calls": None, "input_tokens": None, "output_tokens": None,
                             "worst_input_tokens": None, "worst_output_tokens": None,
                             "notes": missing(corpus, task, ("chunks", "tokens_per_chunk"))})
                continue
            if rule == "validation_paraphrases":
                chunks = min(cfg["validation"]["chunks"], chunks)
            calls = chunks * per_chunk_calls
            input_tokens = calls * (template + (tokens if with_chunk else 0))
            rows.append({"rule": rule, "task": task, "calls": calls, "input_tokens": input_tokens,
                         "output_tokens": calls * (reply_fixed + reply_chunks * tokens),
                         "worst_input_tokens": attempts * input_tokens,
                         "worst_output_tokens": attempts * chunks * max_tokens(tokens * cpt), "notes": []})
    price = config["plan"].get("llm_prices", {}).get(config["llm"]["model"])
    for r in rows:
        for prefix in ("", "worst_"):
            r[f"{prefix}usd"] = None if price is None or r["calls"] is None else \
                (r[f"{prefix}input_tokens"] * price["input"] + r[f"{prefix}output_tokens"] * price["output"]) / 1e6
    return rows


def synthetic_warnings(config: dict, rows: list[dict]) -> list[str]:
    """A synthetic budget larger than the planned relation texts are expected to hold (their calls x
    plan.llm_reply_tokens.relation): rule synthetic_set would stop on it, after the LLM bill."""
    from kinject.training.synthetic import budgets

    largest = max(budgets(config), default=0)
    out = []
    for r in rows:
        if r["rule"] == "synthetic_texts" and r["output_tokens"] is not None and largest > r["output_tokens"]:
            out.append(f"synthetic_texts {r['task']}: the largest budget of synthetic.tokens, {largest}, "
                       f"is more than the ~{r['output_tokens']:,.0f} tokens its {r['calls']} relation texts are expected "
                       f"to hold: lower it, or raise synthetic.pairs_per_chunk / triples_per_chunk")
    return out
