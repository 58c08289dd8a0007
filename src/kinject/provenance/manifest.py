"""The manifest of a run (results/manifest.json, kinject.paths.MANIFEST): every source that decided its results.

Pages (title, page id, revision id, timestamp: the fetch's revisions.json), hub artifacts (repo, revision asked,
commit resolved, file sha256s: the download rules' <folder>.json), local files and dumps (path, size, sha256),
local model folders (base models, and the embedder and the reranker where a job reads them), the LLM cache's
content hash, the config files that built it, the job environment's
package versions and the precision (kinject.precision: the config's, and what it resolves to on the host that
writes the manifest; each score file and checkpoint records what its own job ran in). No timestamp of its own:
the same sources give the same bytes. `kinject lock` turns it into the lock (kinject.provenance.lock); `snakemake
--report` shows it (rule manifest wraps it in report()).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

from kinject.io import write_json
from kinject.provenance.hub import folder_hashes, is_hub_id
from kinject.provenance.lock import file_record, local_sources


def folder_record(folder) -> dict:
    """{files: {name: sha256}, sha256}: one content hash over the sorted (name, sha256) pairs."""
    files = folder_hashes(os.path.expanduser(folder))
    digest = hashlib.sha256("".join(f"{name}\0{sha}\n" for name, sha in files.items()).encode()).hexdigest()
    return {"files": len(files), "sha256": digest}


def environment() -> dict:
    """Python, the platform and every installed distribution's version, by its normalized name (PEP 503)."""
    packages = {re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version
                for dist in metadata.distributions() if dist.metadata["Name"]}
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "packages": dict(sorted(packages.items()))}


def precision_record(requested: str) -> dict:
    """The config's precision and what it resolves to here (a CUDA device if this host has one, else its CPU)."""
    import torch

    from kinject.precision import resolve

    here = resolve(requested, "cuda" if torch.cuda.is_available() else "cpu")
    return {"requested": requested, "on_this_host": here.record}


def retrieval_folders(config: dict) -> list[str]:
    """The retrieval models given as local folders that some job reads: the embedder's (embedder.pretrained not a
    hub id, nor a package) where RAG runs, the cross-encoder's (retrieval.rerank.model not a hub id) where the
    rerank retriever is listed and RAG runs. A hub id's folder is recorded with the hub's (its <folder>.json)."""
    from kinject.grid import extra_retrievers, rag_ks

    if not rag_ks(config):
        return []
    embedder = config["embedder"].get("pretrained")
    folders = [embedder] if "package" not in config["embedder"] and embedder and not is_hub_id(embedder) else []
    if any(r.reranks for r in extra_retrievers(config)) and not is_hub_id(config["retrieval"]["rerank"]["model"]):
        folders.append(config["retrieval"]["rerank"]["model"])
    return folders


def build_manifest(config: dict, *, configfiles: list[str], hub: list[str], revisions: list[str]) -> dict:
    local_models = {m["pretrained"]: folder_record(m["pretrained"]) for m in config["models"].values()
                    if "pretrained" in m and not is_hub_id(m["pretrained"])}
    local_models.update({folder: folder_record(folder) for folder in retrieval_folders(config)})
    from kinject.training.models import gguf_path

    for model in config["models"].values():  # a GGUF file shipped in a package (its version: environment)
        if "package" in model.get("gguf", {}):
            local_models[f"{model['gguf']['package']}:{model['gguf']['file']}"] = file_record(gguf_path(model["gguf"]))
    cache = config.get("llm", {}).get("cache")
    pages = {}
    for task, path in zip(config["tasks"], revisions, strict=True):
        pages[task] = json.loads(Path(path).read_text()) if Path(path).exists() else None
    return {
        "config": {"files": [{"path": str(p), **file_record(p)} for p in configfiles]},
        "pages": pages,
        "hub": {folder: json.loads(Path(f"{folder}.json").read_text()) for folder in hub},
        "files": {path: file_record(path) for path in local_sources(config) if Path(path).is_file()},
        "local_models": local_models,
        "llm_cache": {"path": cache, **folder_record(cache)} if cache and Path(cache).is_dir() else None,
        "environment": environment(),
        "precision": precision_record(config["precision"]),
    }


def write_manifest(config: dict, out, *, configfiles: list[str], hub: list[str], revisions: list[str]) -> str:
    manifest = build_manifest(config, configfiles=configfiles, hub=hub, revisions=revisions)
    write_json(out, manifest)
    n_pages = sum(len(p.get("pages", [])) for p in manifest["pages"].values() if p)
    return (f"{len(manifest['files'])} local files, {len(manifest['hub'])} hub artifacts, {n_pages} pages, "
            f"{len(manifest['environment']['packages'])} packages")
