"""What every stage of bench/run.py shares: the demo run it reads (``Demo``), timing, and the table's rows
(``record``: kinject's way against the naive one; ``record_value``: a value alone; ``add_rows``: the other bench
modules' rows)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
SLOWER = 0.5  # the goal: no stage more than 2x slower than its best-practice configuration
rows: list[dict] = []


@dataclass
class Demo:
    """The completed demo run the benchmark reads: its repository, results folder and config (the repository's
    config/demo.yaml, with the schema's defaults)."""

    repo: Path
    results: Path
    config: dict

    @property
    def model_name(self) -> str:
        return next(iter(self.config["models"]))

    @property
    def precision(self) -> str:
        """The demo's precision as its CPU jobs resolve it on this host (auto: bf16 where native, else fp32)."""
        from kinject.precision import resolve

        return resolve(self.config["precision"], "cpu").name

    @property
    def base(self) -> Path:
        """The demo model as the pipeline built or converted it: results/models/<name>/base."""
        return self.results / "models" / self.model_name / "base"

    def threads(self, rule: str) -> int:
        """A compute rule's threads in the demo (resources.<rule>.cpus_per_task over resources.gpu_rules)."""
        from kinject.settings import job_resources

        return int(job_resources(self.config, rule)["cpus_per_task"])


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` (a job's threads) while inside."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timed(fn, repeat: int = 1):
    """(best wall seconds over ``repeat`` calls, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def record(stage, size, naive, naive_value, ours, our_value, unit, note="", higher_is_better=True):
    """One table row; ratio > 1 means kinject's way is faster than the one it is compared with."""
    ratio = our_value / naive_value if higher_is_better else naive_value / our_value
    rows.append({"stage": stage, "size": size, "compared with": naive, "its value": naive_value, "kinject": ours,
                 "kinject value": our_value, "unit": unit, "ratio": ratio,
                 "verdict": "ok" if ratio >= SLOWER else "SLOW (> 2x slower)", "note": note})
    print(f"{stage:34s} {naive_value:12.2f} -> {our_value:12.2f} {unit:12s} x{ratio:6.2f}  {note}", flush=True)


def record_value(stage, size, ours, value, unit, verdict, note=""):
    """A row with no counterpart (a wall time, a job count, or a measurement that could not be made)."""
    rows.append({"stage": stage, "size": size, "compared with": "", "its value": None, "kinject": ours,
                 "kinject value": value, "unit": unit, "ratio": None, "verdict": verdict, "note": note})
    print(f"{stage:34s} {'':12s}    {value if value is not None else '-'!s:>12} {unit:12s} {verdict}  {note}",
          flush=True)


def add_rows(new_rows: list[dict]) -> None:
    """Rows made by the other bench modules (cleaning, evaluation, demo_evaluation), printed as they come."""
    fmt = lambda v: f"{v:12.2f}" if isinstance(v, (int, float)) else f"{'-':>12}"
    for row in new_rows:
        rows.append(row)
        print(f"{row['stage']:34s} {fmt(row['its value'])} -> {fmt(row['kinject value'])} {row['unit']:12s} "
              f"{row['verdict']}  {row['note']}", flush=True)


class MethodTimer:
    """Replaces a method of a class while patched: seconds spent in it, and the items of its first argument
    (the requests of lm-eval's loglikelihood)."""

    def __init__(self, cls, name: str):
        self.cls, self.name, self.original = cls, name, getattr(cls, name)
        self.seconds, self.items = 0.0, 0

    def __call__(self, obj, *args, **kwargs):
        start = time.perf_counter()
        out = self.original(obj, *args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.items += len(args[0]) if args and hasattr(args[0], "__len__") else 0
        return out

    def patched(self):
        return mock.patch.object(self.cls, self.name, lambda obj, *a, **kw: self(obj, *a, **kw))
