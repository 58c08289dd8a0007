"""Power before spending: for each comparison family of the grid (RAG vs Base, FT vs Base, RAG vs FT,
FT-par vs FT, FT-par+RAG vs RAG, ...: the contrasts of kinject.reporting.comparisons with the paraphrase set
left out), the smallest accuracy difference the grid's questions can detect, computed before any job runs.

The figure is the minimum detectable difference (MDD) of a two-sided test at 80% power and the level a single
true difference among the grid's m comparisons must reach under Benjamini-Hochberg at q = 0.05: q/m (BH's
first step), and, as the lenient end, at q itself (BH's last step, reached when every other difference is real
too). It is statsmodels' ``NormalIndPower`` for two
independent proportions (Cohen's h solved for the sample size, turned into a difference at accuracy 0.5, where
a proportion's variance is largest). The comparisons themselves are paired (the same questions in both cells);
when the two cells' answers agree more than by chance, as they do, the paired test's MDD is smaller, so this
figure bounds it from above (Agresti, *Categorical Data Analysis*, 3rd ed., 2013, section 11.1: the variance
of a paired difference of proportions is the unpaired one less twice the covariance).

Questions that share a source (two generated questions per chunk) are not independent: the MDD is given for
the questions as independent units and for the clusters as the units (every question of a chunk answered
alike: the design effect at its largest), the truth lying between. Training seeds (finetune.seeds) add variance
this figure does not count: a mean over seeds is tested against both variances (docs/statistics.md).

Where the paper reports a difference for a family (``resources/paper_effects.yaml``: its Table 2, current
events), a task with generated questions (the paper's current-events design) is compared with the smallest of
the paper's three models' differences: a warning where the grid cannot detect it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from kinject.grid import cells
from kinject.qa.sources import QUESTION_SOURCES
from kinject.reporting.columns import column_label
from kinject.reporting.comparisons import contrasts
from kinject.reporting.stats import LEVEL
from kinject.training.methods import METHODS

POWER = 0.80
BH_Q = round(1 - LEVEL, 10)  # the comparisons table's Benjamini-Hochberg level
BASELINE = 0.5  # the accuracy at which a difference's variance is largest
PAPER_EFFECTS = Path(__file__).resolve().parents[3] / "resources" / "paper_effects.yaml"


def family(contrast: str) -> str:
    """A contrast with its paraphrase sets left out: "FT-par10+RAG vs RAG" -> "FT-par+RAG vs RAG", a control's
    too: "FT-par10 vs FT-steps10" -> "FT-par vs FT-steps"."""
    controls = "".join(f"|{re.escape(m.label)}" for m in METHODS.values() if m.matches)
    units = "|".join(re.escape(m.unit) for m in METHODS.values() if m.unit)
    contrast = re.sub(rf"-\d+(?:{units})\b", "", contrast) if units else contrast  # SynCPT-20000tok: SynCPT
    return re.sub(rf"(-par{controls})\d+", r"\1", contrast)


def mdd(n: float, alpha: float, power: float = POWER) -> float:
    """The minimum detectable difference in accuracy between two cells of ``n`` (independent) questions each:
    two-sided, at ``alpha`` and ``power``, around accuracy 0.5."""
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0,
                                     alternative="two-sided")
    return math.sin(math.asin(math.sqrt(BASELINE)) + h / 2) ** 2 - BASELINE


def comparison_families(config: dict) -> dict[tuple[str, str], int]:
    """(task, family) -> the number of comparison rows of that family the grid will have (every model, shots
    and format of the task), from the grid's cells and the comparisons' own contrasts."""
    columns: dict[tuple, set] = {}
    for c in (c for c in cells(config) if c.seed is None):  # an extra training seed's cells: the same comparisons
        stem, _, p = c.method.partition("-p")
        columns.setdefault((c.model, c.task, c.shots, c.format), set()).add(column_label(stem, p or 0))
    out: dict[tuple[str, str], int] = {}
    for (_, task, _, _), have in columns.items():
        for a, b in contrasts(have):
            key = (task, family(f"{a} vs {b}"))
            out[key] = out.get(key, 0) + 1
    return out


def paper_effects(path: Path = PAPER_EFFECTS) -> dict[str, float]:
    """Each family the paper reports: the smallest of its models' absolute differences."""
    data = yaml.safe_load(Path(path).read_text())
    return {name: min(abs(v) for v in by_model.values()) for name, by_model in data["families"].items()}


def power_rows(config: dict, corpora: dict) -> tuple[list[dict], list[str]]:
    """One row per (task, family): its comparisons, questions, clusters, the level, both MDDs and the paper's
    smallest effect where it applies; and the warnings. ``corpora``: task -> kinject.planning.corpus.Corpus."""
    families = comparison_families(config)
    m = sum(families.values())
    alpha = BH_Q / m if m else BH_Q
    effects = paper_effects()
    rows, warnings = [], []
    for (task, name), count in families.items():
        spec = config["tasks"][task]["questions"]
        source = QUESTION_SOURCES[spec["source"]]
        n = corpora[task]["questions"] if task in corpora else None
        clusters = None if n is None else max(1, math.ceil(n / source.cluster_size(spec)))
        paper = effects.get(name) if source.paper_effects else None
        row = {"task": task, "family": name, "comparisons": count, "questions": n, "clusters": clusters,
               "alpha": alpha, "mdd_lenient": None if n is None else mdd(n, BH_Q),
               "mdd_questions": None if n is None else mdd(n, alpha),
               "mdd_clusters": None if clusters is None else mdd(clusters, alpha), "paper_effect": paper}
        rows.append(row)
        if paper is not None and n is not None and row["mdd_clusters"] > paper:
            how = (f"cannot detect it even at level {BH_Q:g} with independent questions ({row['mdd_lenient']:.3f})"
                   if row["mdd_lenient"] > paper else "may not detect it")
            warnings.append(f"{task}: {name}: the paper's smallest difference is {paper:.3f}; {n} questions "
                            f"({clusters} clusters) detect {row['mdd_questions']:.3f} (independent) to "
                            f"{row['mdd_clusters']:.3f} (clustered) at 80% power and level {alpha:.2g} (BH's first "
                            f"step over {m} comparisons): {how}")
    return rows, warnings
