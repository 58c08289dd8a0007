"""An lm-eval model that runs each distinct prompt once: lm-eval's HF model (``HFLM``) with its scoring of
log-likelihood requests replaced, registered in lm-eval's own model registry as ``kinject-hf``.

Stock ``HFLM`` runs every (context, continuation) request as its own sequence, so a multiple-choice question
with four options pays for its prompt (RAG chunks, few-shot examples) four times. Here requests are grouped
by their context tokens; each distinct context goes through the model once (right-padded with a few others,
``use_cache``) and all of its continuations are scored from the cached keys and values, as one batch. It
returns, in lm-eval's order, the (log-likelihood, is_greedy) pairs stock ``HFLM`` returns (same tokenization
by lm-eval's own ``TemplateLM.loglikelihood``, same left truncation to ``max_length``, same cache hook).

Both paths (``shared_prefix`` on, or off = stock ``HFLM`` scoring) count, per task, the prompts lm-eval would
cut from the left (context + continuation longer than ``max_length``, in the model's own tokens) before any
scoring starts, and refuse the evaluation when more than ``max_truncated_fraction`` of a task's questions
would be cut.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from kinject.errors import KinjectError

log = logging.getLogger(__name__)

NAME = "kinject-hf"
MAX_PADDING = 0.1  # a context joins a batch only if padding it to the batch's longest adds at most this share


def effective_context(context: list[int], continuation: list[int], max_length: int) -> list[int]:
    """The context tokens a causal ``HFLM`` actually conditions ``continuation`` on: lm-eval feeds
    ``(context + continuation)[-(max_length + 1):][:-1]``, so the context loses its left end when the two
    together are longer than ``max_length + 1`` tokens (the last continuation token is never fed)."""
    return (context + continuation)[-(max_length + 1):][:-len(continuation)]


def is_truncated(context: list[int], continuation: list[int], max_length: int) -> bool:
    """True where lm-eval cuts the request from the left (what its 'Combined length ...' warning reports)."""
    return len(context) + len(continuation) > max_length + 1


@register_model(NAME)
class SharedPrefixHFLM(HFLM):
    """``HFLM`` plus ``shared_prefix`` (score each distinct context once; False = stock scoring),
    ``max_truncated_fraction`` (per task, the share of questions lm-eval may cut from the left; above it the
    evaluation stops before scoring) and ``task_files`` ({task name: its YAML}, named in that error).

    After ``loglikelihood``: ``truncation`` holds per task {n_questions, n_truncated, n_requests_truncated,
    max_tokens, max_length}, and ``token_counts`` the tokens fed through the model (padding included), the
    requests, distinct contexts and their tokens, and the continuation tokens.
    """

    def __init__(self, *args, shared_prefix: bool = True, max_truncated_fraction: float = 0.0,
                 task_files: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared_prefix = bool(shared_prefix)
        self.max_truncated_fraction = float(max_truncated_fraction)
        self.task_files = dict(task_files or {})
        self.truncation: dict[str, dict] = {}
        self.token_counts = dict.fromkeys(("forward_tokens", "requests", "contexts", "context_tokens",
                                           "continuation_tokens"), 0)
        self._instances = None
        accepted = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in accepted
        self._cache_arg = "cache" if "cache" in accepted else "past_key_values"  # renamed in transformers 5
        if self.shared_prefix and self.backend != "causal":
            raise KinjectError(self.pretrained, f"shared-prefix scoring needs a causal LM (this is {self.backend}); "
                                                "set evaluation.shared_prefix: false")
        if self.shared_prefix and not isinstance(self.batch_size, int):
            raise KinjectError(self.pretrained, f"shared-prefix scoring needs a fixed batch size "
                                                f"(got {self.batch_size!r})")
        log.info("scoring: %s, max_length %d tokens, batch size %s, dtype %s", self.scorer, self.max_length,
                 self.batch_size, self.model.dtype)

    @property
    def scorer(self) -> str:
        """What scores the requests: 'kinject-hf' (one pass per distinct context) or 'hf' (lm-eval's own)."""
        return NAME if self.shared_prefix else "hf"

    # -- lm-eval entry point: tokenized by lm-eval itself, checked, then scored ----------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._instances = requests  # TemplateLM.loglikelihood tokenizes them in this order
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._instances = None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        if self._instances is not None:
            if len(self._instances) != len(requests):  # a changed lm-eval: the prompts could not be checked
                raise KinjectError(self.pretrained, (
                    f"lm-eval tokenized {len(requests)} requests for {len(self._instances)} instances; kinject "
                    f"cannot check their prompt lengths (lm-eval {self._lm_eval_version()} is not supported)"))
            self._check_truncation(self._instances, requests)
        self._count_tokens(requests)
        if not self.shared_prefix:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        return self._shared_prefix_tokens(requests, disable_tqdm)

    @staticmethod
    def _lm_eval_version() -> str:
        from importlib.metadata import version

        return version("lm_eval")

    def _model_call(self, inps, attn_mask=None, labels=None):
        self.token_counts["forward_tokens"] += inps.numel()
        return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    # -- prompt truncation ---------------------------------------------------------------------------------

    def _check_truncation(self, instances, requests) -> None:
        """Per task: questions whose prompt lm-eval would cut; more than the allowed share stops the job here,
        before any request is scored."""
        limit = self.max_length
        questions, cut, cut_requests, longest = defaultdict(set), defaultdict(set), defaultdict(int), defaultdict(int)
        for instance, (_, context, continuation) in zip(instances, requests, strict=True):
            task = instance.task_name
            questions[task].add(instance.doc_id)
            longest[task] = max(longest[task], len(context) + len(continuation) - 1)
            if is_truncated(context, continuation, limit):
                cut[task].add(instance.doc_id)
                cut_requests[task] += 1
        for task in questions:
            found = {"n_questions": len(questions[task]), "n_truncated": len(cut[task]),
                     "n_requests_truncated": cut_requests[task], "max_tokens": longest[task], "max_length": limit}
            self.truncation[task] = found
            log.info("%s: %d of %d prompts longer than max_length %d (longest %d tokens)", task,
                     found["n_truncated"], found["n_questions"], limit, found["max_tokens"])
        for task, found in self.truncation.items():
            if found["n_truncated"] > self.max_truncated_fraction * found["n_questions"]:
                raise KinjectError(self.task_files.get(task, task), (
                    f"{found['n_truncated']} of {found['n_questions']} prompts are longer than the model's "
                    f"max_length of {limit} tokens (longest {found['max_tokens']}) and would be cut from the left; "
                    f"evaluation.max_truncated_fraction allows {self.max_truncated_fraction:g}"))

    def _count_tokens(self, requests) -> None:
        contexts = {tuple(effective_context(ctx, cont, self.max_length)) for _, ctx, cont in requests}
        counts = self.token_counts
        counts["requests"] += len(requests)
        counts["contexts"] += len(contexts)
        counts["context_tokens"] += sum(map(len, contexts))
        counts["continuation_tokens"] += sum(len(cont) for _, _, cont in requests)

    # -- shared-prefix scoring -----------------------------------------------------------------------------

    def _shared_prefix_tokens(self, requests, disable_tqdm: bool):
        """Group requests by the context lm-eval conditions them on (after its left truncation), score each
        group's continuations over one pass of its context, and return the answers in the requests' order."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (_, context, continuation) in enumerate(requests):
            assert context and continuation and len(continuation) <= self.max_length  # as stock HFLM asserts
            groups[tuple(effective_context(context, continuation, self.max_length))].append(i)
        contexts = sorted(groups, key=lambda c: (-len(c), c))  # longest first, as lm-eval orders its batches
        answers: list = [None] * len(requests)
        pbar = tqdm(total=len(requests), disable=(disable_tqdm or self.rank != 0),
                    desc="Running loglikelihood requests (shared prefix)")
        span = {c: max(len(requests[i][2]) for i in groups[c]) for c in contexts}  # longest continuation
        for batch in self._context_batches(contexts, groups, span):
            members = [i for c in batch for i in groups[c]]
            scored = self._score_batch(batch, [[requests[i][2] for i in groups[c]] for c in batch])
            for i, answer in zip(members, scored, strict=True):
                answers[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            pbar.update(len(members))
        pbar.close()
        return answers

    def _context_batches(self, contexts, groups, span):
        """Consecutive contexts (longest first) whose continuations fill at most ``batch_size`` rows together
        (one context at least), each within ``MAX_PADDING`` of the batch's longest so padding wastes little.
        A sliding attention window counts cache slots, padding included: with one, a context joins a batch
        only while the padded batch stays within the window (``span``: a context's longest continuation)."""
        window = getattr(self.config, "sliding_window", None)
        batch, rows, longest = [], 0, 0
        for context in contexts:
            n = len(groups[context])
            if batch and (rows + n > self.batch_size or len(context) < (1 - MAX_PADDING) * len(batch[0])
                          or (window and len(batch[0]) + max(longest, span[context]) > window)):
                yield batch
                batch, rows, longest = [], 0, 0
            batch.append(context)
            rows += n
            longest = max(longest, span[context])
        if batch:
            yield batch

    def _score_batch(self, contexts, continuations) -> list[tuple[float, bool]]:
        """One forward over the contexts but their last token (right-padded: causal attention never looks
        right, so padding changes nothing, as in stock HFLM's batches), then one over every continuation,
        each row ``[last context token] + continuation[:-1]`` attending to its own context's cached keys and
        values (padding masked out, positions continuing its context). Returns (sum log-prob, is_greedy)."""
        device = self.device
        heads = [len(c) - 1 for c in contexts]
        width = max(heads)
        owner = [j for j, conts in enumerate(continuations) for _ in conts]
        rows = [[contexts[j][-1], *cont[:-1]] for j, conts in enumerate(continuations) for cont in conts]
        targets = [cont for conts in continuations for cont in conts]
        length = max(map(len, rows))
        ids = torch.zeros((len(rows), length), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
        kwargs = {}
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            if width:
                prefix = torch.zeros((len(contexts), width), dtype=torch.long)
                for j, context in enumerate(contexts):
                    prefix[j, :heads[j]] = torch.tensor(context[:-1])
                extra = {"logits_to_keep": 1} if self._keeps_logits else {}
                out = self.model(input_ids=prefix.to(device), use_cache=True, **extra)
                cache = getattr(out, self._cache_arg)
                self.token_counts["forward_tokens"] += prefix.numel()
                cache.batch_select_indices(torch.tensor(owner, device=device))
                start = torch.tensor([heads[j] for j in owner])
                kwargs = {self._cache_arg: cache, "use_cache": True,
                          "position_ids": (start[:, None] + torch.arange(length)[None, :]).to(device)}
                if min(heads) < width:
                    mask = torch.ones((len(rows), width + length), dtype=torch.long)
                    mask[:, :width] = (torch.arange(width)[None, :] < start[:, None]).long()
                    kwargs["attention_mask"] = mask.to(device)
            logits = self.model(input_ids=ids.to(device), **kwargs).logits
            self.token_counts["forward_tokens"] += ids.numel()
            logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        answers = []
        for r, target in enumerate(targets):
            scored = logprobs[r, :len(target)]
            tokens = torch.tensor(target, dtype=torch.long, device=scored.device)
            greedy = bool((scored.argmax(dim=-1) == tokens).all())
            answers.append((float(scored.gather(1, tokens[:, None]).sum()), greedy))
        return answers
