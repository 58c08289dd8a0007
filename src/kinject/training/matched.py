"""The steps-matched control (method ``steps``): paraphrase set k trains on the chunks and k paraphrases of each,
so for the same epochs it takes about k + 1 times the optimizer steps of set 0, and "paraphrases help" cannot be
told from "more steps help". The control trains on set 0's data (the original chunks) for as many optimizer steps,
and so as many tokens (blocks are fixed size), as set k's run of the method it matches, at that method's learning
rate and epochs (its search's choice; the control runs no search of its own).

Set 0's packed blocks are repeated, in order, to the length of set k's (:func:`cycle_blocks`): an epoch of the
control is as many blocks as an epoch of set k, so with the same epochs, batch and processes the Trainer counts
the same steps per epoch (:func:`optimizer_steps`), the same warm-up and the same epoch boundaries, and sees the
same number of tokens. Which sets get a control: ``finetune.steps_matched`` (:data:`SETS_KEY`).
"""

from __future__ import annotations

import math

SETS_KEY = "finetune.steps_matched"


def optimizer_steps(n_blocks: int, *, epochs: int, per_device_batch_size: int, world_size: int,
                    accumulation: int) -> int:
    """The optimizer steps of a run over ``n_blocks`` blocks, as transformers' Trainer counts them: each process
    reads ceil(n_blocks / (per_device_batch_size x world_size)) micro-batches an epoch, and every ``accumulation``
    of them (a last, shorter group too) is one step."""
    micro_batches = math.ceil(n_blocks / (per_device_batch_size * world_size))
    return epochs * max(1, math.ceil(micro_batches / accumulation))


def cycle_blocks(blocks: list, length: int) -> list:
    """``blocks`` repeated in order and cut to ``length`` (the matched set's block count): every block of set 0
    is seen length / len(blocks) times an epoch, give or take one."""
    if not blocks:
        raise ValueError("no blocks to cycle")
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    return [blocks[i % len(blocks)] for i in range(length)]


def matched_record(matched_blocks: list, *, epochs: int, per_device_batch_size: int, world_size: int,
                   accumulation: int) -> dict:
    """What a control records of the run it matches (its training.json and summary): that run's blocks, optimizer
    steps and tokens (every epoch's)."""
    steps = optimizer_steps(len(matched_blocks), epochs=epochs, per_device_batch_size=per_device_batch_size,
                            world_size=world_size, accumulation=accumulation)
    return {"blocks": len(matched_blocks), "steps": steps, "tokens": epochs * sum(map(len, matched_blocks))}
