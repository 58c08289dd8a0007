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
alike: the design effect at its largest), the truth lying between.

Training adds variance of its own: a fine-tuned cell trained under another seed answers differently. A
comparison with a trained side is a difference of methods only if that variance is counted, as the tables'
two-level bootstrap counts it where a column has several seeds (finetune.seeds; docs/statistics.md). Assumed
here: a trained cell's accuracy is its method's plus a seed effect of standard deviation ``plan.seed_sd``
(sigma), the same for every trained cell, independent between the two sides of a comparison (a shared seed's
correlation would only shrink the difference's variance: an upper bound again); a comparison paired over S
seeds (kinject.reporting.comparisons.seed_pairs: the seeds its columns both have, or every seed of the trained
one against an untrained one) averages S seed effects per trained side, the questions' variance staying that of
one run (the seeds answer the same questions). So the difference's variance is the questions' plus
t sigma^2 / S, t the trained sides (0: RAG vs Base; 1: FT vs Base; 2: FT-par vs FT). On NormalIndPower's
arcsine scale around 0.5 (d 2 asin(sqrt(p)) / dp = 2 there) that is its formula at the effective number of
units n_e = 1 / (1/n + 2 t sigma^2 / S) per cell (:func:`effective_n`), n the questions or the clusters:
sigma = 0 gives the questions-only figure, and with S = 1 a single run's seed effect is counted whole (the
comparisons' McNemar test, which cannot see it, is then about the two trained models, not their methods).
Its default, 0.05, is the extended demo's measured spread across three training seeds (docs/plan.md: FT .031,
FT-par10 .075, FT-steps10 .042, pooled .053; SmolLM2-135M on 68 questions): for larger models and question sets,
pessimistic.

Where the paper reports a difference for a family (``resources/paper_effects.yaml``: its Table 2, current
events), a task with generated questions (the paper's current-events design) is compared with the smallest of
the paper's three models' differences: a warning where the grid cannot detect it.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from kinject.grid import cells
from kinject.qa.sources import QUESTION_SOURCES
from kinject.reporting.columns import column_label
from kinject.reporting.comparisons import contrasts, seed_pairs
from kinject.reporting.stats import LEVEL
from kinject.training.methods import by_column
from kinject.training.seeds import untag

POWER = 0.80
BH_Q = round(1 - LEVEL, 10)  # the comparisons table's Benjamini-Hochberg level
BASELINE = 0.5  # the accuracy at which a difference's variance is largest
PAPER_EFFECTS = Path(__file__).resolve().parents[3] / "resources" / "paper_effects.yaml"


def family(contrast: str) -> str:
    """A contrast with its paraphrase sets left out: "FT-par10+RAG vs RAG" -> "FT-par+RAG vs RAG", a control's
    too: "FT-par10 vs FT-steps10" -> "FT-par vs FT-steps", an amount's: "SynCPT-20000tok vs FT" -> "SynCPT vs FT"
    (kinject.training.methods.Method.family)."""
    def name(column: str) -> str:
        found = by_column(column)
        return found[0].family(found[1]) if found else column

    return " vs ".join("+".join(name(c) for c in side.split("+")) for side in contrast.split(" vs "))


def mdd(n: float, alpha: float, power: float = POWER) -> float:
    """The minimum detectable difference in accuracy between two cells of ``n`` (independent) questions each:
    two-sided, at ``alpha`` and ``power``, around accuracy 0.5."""
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0,
                                     alternative="two-sided")
    return math.sin(math.asin(math.sqrt(BASELINE)) + h / 2) ** 2 - BASELINE


def effective_n(n: float, seed_sd: float, seeds: int, trained: int) -> float:
    """The units per cell at which NormalIndPower's variance is a comparison's with its training seeds counted:
    1 / (1/n + 2 t sigma^2 / S) for ``trained`` (t) sides averaged over ``seeds`` (S), each seed effect of
    standard deviation ``seed_sd`` (sigma) in accuracy (the module's docstring); ``n`` itself where t or sigma
    is 0."""
    return 1 / (1 / n + 2 * trained * seed_sd ** 2 / seeds)


def comparison_families(config: dict) -> dict[tuple[str, str, int, int], int]:
    """(task, family, S, t) -> the number of comparison rows of that family the grid will have (every model, shots
    and format of the task), from the grid's cells and the comparisons' own contrasts; S: the seed pairs each row
    is paired within (kinject.reporting.comparisons.seed_pairs), t: its trained sides (0, 1 or 2)."""
    columns: dict[tuple, dict[str, set]] = {}
    for c in cells(config):
        stem, _, p = c.method.partition("-p")
        p, extra = untag(p) if p else (0, None)
        seed = extra if extra is not None else config["seed"] if c.finetuned else None  # None: untrained
        setting = columns.setdefault((c.model, c.task, c.shots, c.format), {})
        setting.setdefault(column_label(stem, p), set()).add(seed)
    out: dict[tuple[str, str, int, int], int] = {}
    for (_, task, _, _), have in columns.items():
        for a, b in contrasts(have):
            a_seeds, b_seeds = sorted(have[a], key=str), sorted(have[b], key=str)
            trained = (a_seeds != [None]) + (b_seeds != [None])
            key = (task, family(f"{a} vs {b}"), len(seed_pairs(a_seeds, b_seeds)), trained)
            out[key] = out.get(key, 0) + 1
    return out


def paper_effects(path: Path = PAPER_EFFECTS) -> dict[str, float]:
    """Each family the paper reports: the smallest of its models' absolute differences."""
    data = yaml.safe_load(Path(path).read_text())
    return {name: min(abs(v) for v in by_model.values()) for name, by_model in data["families"].items()}


def power_rows(config: dict, corpora: dict) -> tuple[list[dict], list[str]]:
    """One row per (task, family, seeds): its comparisons, questions, clusters, the seed pairs (None where no side
    is trained), the level, the MDDs (each with the training seeds' variance at ``plan.seed_sd``) and the paper's
    smallest effect where it applies; and the warnings. ``corpora``: task -> kinject.planning.corpus.Corpus."""
    families = comparison_families(config)
    m = sum(families.values())
    alpha = BH_Q / m if m else BH_Q
    effects = paper_effects()
    seed_sd = config["plan"]["seed_sd"]
    rows, warnings = [], []
    for (task, name, seeds, trained), count in families.items():
        spec = config["tasks"][task]["questions"]
        source = QUESTION_SOURCES[spec["source"]]
        n = corpora[task]["questions"] if task in corpora else None
        clusters = None if n is None else max(1, math.ceil(n / source.cluster_size(spec)))
        paper = effects.get(name) if source.paper_effects else None

        def at(units, level):
            return None if units is None else mdd(effective_n(units, seed_sd, seeds, trained), level)

        row = {"task": task, "family": name, "comparisons": count, "questions": n, "clusters": clusters,
               "seeds": seeds if trained else None, "trained_sides": trained, "seed_sd": seed_sd, "alpha": alpha,
               "mdd_lenient": at(n, BH_Q), "mdd_questions": at(n, alpha), "mdd_clusters": at(clusters, alpha),
               "paper_effect": paper}
        rows.append(row)
        if paper is not None and n is not None and row["mdd_clusters"] > paper:
            how = (f"cannot detect it even at level {BH_Q:g} with independent questions ({row['mdd_lenient']:.3f})"
                   if row["mdd_lenient"] > paper else "may not detect it")
            runs = (f" and {seeds} training seed{'s' if seeds > 1 else ''} (plan.seed_sd {seed_sd:g})" if trained
                    else "")
            warnings.append(f"{task}: {name}: the paper's smallest difference is {paper:.3f}; {n} questions "
                            f"({clusters} clusters){runs} detect {row['mdd_questions']:.3f} (independent) to "
                            f"{row['mdd_clusters']:.3f} (clustered) at 80% power and level {alpha:.2g} (BH's first "
                            f"step over {m} comparisons): {how}")
    return rows, warnings
