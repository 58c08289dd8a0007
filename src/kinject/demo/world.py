"""The demo's fictional world: two knowledge bases no model can know, generated from one seed.

    python -m kinject.demo.world --out resources/demo

writes (byte-identically on every run): ``atlas.xml`` and ``current_events.xml`` (MediaWiki XML exports),
``mmlu/data/{dev,test}/atlas_{dev,test}.csv`` (an MMLU subject in the original CSV layout),
``world.json`` (the fact registry the offline author reads) and ``pretrain.jsonl`` (a corpus of other,
disjoint fictional facts for the demo's tiny base model).

Every article sentence states exactly one (subject, relation, object) fact, names its subject in full and
draws its object from a typed domain, so questions and distractors come straight from the registry.
The registry stores each sentence as wikiextractor leaves it (links and bold removed).

This module builds the world in one fixed order of random draws and writes it; the parts are modules of
their own: the relation templates and word lists are data (``lexicon.yaml``, read by ``lexicon``), the
world's model is ``model``, the two knowledge bases are built by ``atlas`` and ``current_events``, facts
become sentences and registry entries in ``facts``, articles become wiki markup in ``wikitext`` and a
MediaWiki XML export in ``xml_dump``; ``mmlu`` and ``pretrain`` write the MMLU CSVs and the pre-training corpus.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from kinject.demo.atlas import build_atlas
from kinject.demo.current_events import build_current_events
from kinject.demo.facts import domain_pools, state_kb
from kinject.demo.mmlu import mmlu_files
from kinject.demo.model import Names
from kinject.demo.pretrain import pretrain_docs
from kinject.demo.wikitext import kb_pages
from kinject.demo.xml_dump import dump_xml
from kinject.io import write_text

SEED = 2031
N_PRETRAIN_WORLDS = 5


def build(seed: int = SEED) -> dict[str, str]:
    """Every output file (relative path -> exact text)."""
    rng = random.Random(seed)
    names = Names(rng)
    kbs = [build_atlas(rng, names), build_current_events(rng, names)]
    stated = {kb.name: state_kb(kb, rng) for kb in kbs}
    pools = {kb.name: domain_pools(kb, stated[kb.name], rng) for kb in kbs}
    facts = [f for kb in kbs for sa in stated[kb.name] for _, fs in sa.paragraphs for f in fs]
    atlas_title = stated["atlas"][0].article.title
    files = {
        "atlas.xml": dump_xml("Atlaspedia", "atlaswiki",
                              kb_pages("atlas", stated["atlas"], f"the {atlas_title}", f"the {atlas_title}"), 2031),
        "current_events.xml": dump_xml("Newspedia", "newswiki",
                                       kb_pages("current_events", stated["current_events"], None, "2031"), 2032),
        **mmlu_files([f for f in facts if f.kb == "atlas"], pools["atlas"], rng),
    }
    docs = []
    for _ in range(N_PRETRAIN_WORLDS):
        for kb in (build_atlas(rng, names), build_current_events(rng, names)):
            docs += pretrain_docs(state_kb(kb, rng, paraphrase_clauses=False), rng)  # the tiny model's corpus
    rng.shuffle(docs)
    files["pretrain.jsonl"] = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
    files["world.json"] = json.dumps({"seed": seed, "facts": [f.to_json() for f in facts], "domains": pools},
                                     indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return files


def write_world(out, seed: int = SEED) -> list[Path]:
    paths = []
    for rel, text in build(seed).items():
        write_text(Path(out) / rel, text)
        paths.append(Path(out) / rel)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kinject.demo.world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="resources/demo", help="output folder (default: resources/demo)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in write_world(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
