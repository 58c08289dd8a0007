"""Rewrite the demo's LLM response cache from scratch: run the demo's LLM rules with the offline author.

    python -m kinject.demo.build_cache

The demo itself replays the cache (``llm.mode: replay`` in config/demo.yaml); this build overlays
config/demo_author.yaml (``llm.mode: live``, ``llm.backend: demo_author``), so every request is answered by
kinject.demo.author, offline, and recorded. The old cache is removed first: no stale entry survives.
Run it after changing the demo world, the chunking settings, a prompt or an ``llm`` request setting
(model, temperature, json_mode: each changes the cache keys). demo_author.yaml adds both tasks' validation
sets, so the cache also serves make demo-extended's searches and the test suite's, and current events' synthetic CPT
corpus (its entity and relation calls).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
LLM_RULES = ["generate_questions", "select_questions", "paraphrase_chunks", "validation_paraphrases",
             "synthetic_entities", "synthetic_texts"]


def main() -> None:
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    author = yaml.safe_load((ROOT / "config" / "demo_author.yaml").read_text())
    cache = ROOT / config["llm"]["cache"]
    shutil.rmtree(cache, ignore_errors=True)
    targets = []
    for name, task in config["tasks"].items():
        task = {**task, **author.get("tasks", {}).get(name, {})}  # the searches' validation sets, as Snakemake merges
        if task["questions"]["source"] == "generated":
            targets.append(f"results/{name}/questions/selected.parquet")
        if max(task["paraphrase_sets"]) > 0:
            targets.append(f"results/{name}/paraphrases/generated.parquet")
        if "validation" in task:
            targets.append(f"results/{name}/validation/paraphrases.parquet")
        if "synthetic" in task.get("finetune_methods", []):  # synthetic CPT's entities and relation texts
            targets.append(f"results/{name}/synthetic/texts.parquet")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/demo.yaml",
           "config/demo_author.yaml", "--forcerun", *LLM_RULES, "--", *targets]
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"wrote {sum(1 for _ in cache.rglob('*.json'))} cached replies to {cache}")


if __name__ == "__main__":
    main()
