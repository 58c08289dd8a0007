"""kinject: fine-tuning vs retrieval for knowledge injection (Ovadia et al., 2023), as a Snakemake pipeline.

The package's folders are the study's stages (docs/layout.md): ``knowledge`` (knowledge bases), ``qa``
(question sets, paraphrases and the LLM client that writes them), ``training`` (fine-tuning methods), ``evaluation`` (retrieval
and scoring), ``reporting`` (tables and statistics), ``provenance`` (hub, lock, manifest), ``planning``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# The names before the stage folders of the modules scripts/*.py import, which they still use. Snakemake re-runs every
# finished job of a rule whose script file is newer than its outputs, so rewriting the scripts' import lines
# would re-run a whole finished study (GPU-hours) for no change in what any job computes: they stay as they
# are, and these names resolve to the very module objects below. Code in src/, tests/ and bench/ uses the
# new names (tests/test_layout.py checks that only scripts/ uses these).
MOVED = {
    "hub": "provenance.hub", "lock": "provenance.lock", "manifest": "provenance.manifest",
    "data": "knowledge.data", "corpus": "knowledge.corpus",
    "questions": "qa.sets", "paraphrases": "qa.paraphrases", "llm": "qa.llm",
    "hparams": "training.hparams", "launch": "training.launch", "models": "training.models",
    "evaluate": "evaluation.evaluate", "retrieval": "evaluation.retrievers",
    "report": "reporting.report", "forgetting": "reporting.forgetting",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``kinject.<old>`` (MOVED) imported as the module ``kinject.<new>`` itself: one module object under both
    names, so state and monkeypatches are shared."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix(__name__ + ".")
        if fullname.startswith(__name__ + ".") and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED[spec.name.removeprefix(__name__ + '.')]}")

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _MovedFinder())
