"""The lock: what a first run resolved (hub branch -> commit, as_of -> page revision ids, local files -> sha256),
written by ``kinject lock`` from the run's manifest into a file committed next to the config (config.yaml ->
config.lock.json), and read back by a later run through the config key ``lock``.

Under a lock the download rules fetch the locked commits (``kinject.provenance.hub.download``), the fetch jobs take the
locked page revisions (``pinned_knowledge_base``: by id from the API, checked against a dump), and a source that no longer matches is one line naming it, before any
job starts (``check_local_files``, ``check_hub_lock``): never a silent rebuild.

Shape (JSON, keys sorted)::

    {"lockfile_version": 1, "config": ["config.yaml"],
     "hub":   {"results/hub/models/llama2-7b": {"repo", "repo_type", "revision", "commit", "files": {name: sha256}}},
     "pages": {"<task>": {"source", "as_of", "pages": [{"title", "pageid", "revid", "timestamp"}], "missing": []}},
     "files": {"<path>": {"size", "sha256"}}}
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import write_json
from kinject.provenance.hub import sha256_file

log = logging.getLogger(__name__)

LOCKFILE_VERSION = 1
HASH_CACHE = "results/.work/file_hashes.json"  # path -> size, mtime, sha256: a large dump is hashed once


def default_lock_path(configfile) -> str:
    """config.yaml -> config.lock.json, config/demo.yaml -> config/demo.lock.json."""
    path = Path(configfile)
    return str(path.with_name(path.name.removesuffix(path.suffix) + ".lock.json"))


def read_lock_file(path) -> dict:
    try:
        lock = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KinjectError(path, "lock file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KinjectError(path, f"not a JSON lock file ({exc})") from None
    if not isinstance(lock, dict) or lock.get("lockfile_version") != LOCKFILE_VERSION:
        raise KinjectError(path, f"not a kinject lock file (lockfile_version {LOCKFILE_VERSION} expected)")
    return lock


def read_lock(config: dict) -> dict | None:
    """The config's lock (key ``lock``), or None: without the key, or before the first `kinject lock` (said once
    on stderr, since then nothing is pinned)."""
    path = config.get("lock")
    if path is None:
        return None
    if not Path(path).exists():
        print(f"kinject: lock {path} does not exist yet: nothing is pinned; after this run, `kinject lock` writes it",
              file=sys.stderr)
        return None
    return read_lock_file(path)


def pinned_knowledge_base(config: dict, task: str, kb: dict) -> dict:
    """The knowledge base a fetch job reads: under a lock that pinned this task's pages, those revisions
    (revisions_file ``LOCK#task``: fetched by id from the API, checked against a dump), unless the config names
    a revisions_file of its own. The job reads the lock itself, so locking what a run fetched re-runs nothing.
    A lock without pages for the task is one line."""
    lock = None if kb.get("revisions_file") else read_lock(config)
    if lock is None:
        return kb
    if lock.get("pages", {}).get(task) is None:
        raise KinjectError(config["lock"], f"has no pages for task {task}; run `kinject lock` again after a run")
    log.info("%s: pages pinned by %s", task, config["lock"])
    return {**kb, "revisions_file": f"{config['lock']}#{task}"}


def fetch_locked(config: dict, knowledge_base: dict, task: str, *args, **kwargs) -> str:
    """Rule fetch under the config's lock: kinject.knowledge.data.fetch_knowledge_base of pinned_knowledge_base."""
    from kinject.knowledge.data import fetch_knowledge_base

    return fetch_knowledge_base(pinned_knowledge_base(config, task, knowledge_base), task, *args, **kwargs)


def local_sources(config: dict) -> list[str]:
    """Every local file that decides a result: dumps, title and hub-page lists, a files source's documents,
    tables of documents or questions, MMLU CSVs, review files, the controls' files, GGUF files given by path.
    (The LLM cache and local model folders are recorded by the manifest as folders.)"""
    from kinject.knowledge.sources import KNOWLEDGE_SOURCES
    from kinject.qa.sources import QUESTION_SOURCES

    def question_files(q: dict) -> list[str]:
        return QUESTION_SOURCES[q["source"]].files(q)

    paths = []
    for task in config["tasks"].values():
        kb, q = task["knowledge_base"], task["questions"]
        paths += KNOWLEDGE_SOURCES[kb["source"]].locked(kb)
        paths += question_files(q)
        if q.get("review", "skip") != "skip":
            paths.append(q["review"])
    for control in config["evaluation"].get("controls", {}).values():
        paths += question_files(control)
    paths += [m["gguf"]["path"] for m in config["models"].values() if "path" in m.get("gguf", {})]
    return sorted(set(paths))


def file_record(path, cache: dict | None = None) -> dict:
    """{size, sha256} of a file; ``cache`` (path -> size, mtime_ns, sha256) skips re-hashing an unchanged file."""
    stat = os.stat(path)
    hit = (cache or {}).get(str(path))
    if hit and hit["size"] == stat.st_size and hit["mtime_ns"] == stat.st_mtime_ns:
        return {"size": hit["size"], "sha256": hit["sha256"]}
    record = {"size": stat.st_size, "sha256": sha256_file(path)}
    if cache is not None:
        cache[str(path)] = {**record, "mtime_ns": stat.st_mtime_ns}
    return record


def _load_cache() -> dict:
    try:
        return json.loads(Path(HASH_CACHE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def check_local_files(config: dict, lock: dict | None) -> None:
    """Every local file the lock recorded still has its size and sha256; else one line naming it."""
    if lock is None:
        return
    cache = _load_cache()
    before = dict(cache)
    for path, locked in sorted(lock.get("files", {}).items()):
        if not Path(path).is_file():
            raise KinjectError(path, f"missing, but {config['lock']} locked it (sha256 {locked['sha256'][:12]})")
        now = file_record(path, cache)
        if now["sha256"] != locked["sha256"]:
            raise KinjectError(path, f"changed since it was locked: sha256 {now['sha256'][:12]}, {config['lock']} "
                                     f"has {locked['sha256'][:12]}; restore it, or `kinject lock` again to accept it")
    if cache != before:
        save_hashes({path: record for path, record in cache.items() if before.get(path) != record})


def save_hashes(new: dict) -> None:
    """Add ``new`` records to the hash cache. Every run of the workflow writes it when its Snakefile is parsed,
    before Snakemake locks anything, so two runs on one results folder may write at once: under a file lock
    the cache is read again and merged (a run's records are never lost to the other's rename)."""
    from filelock import FileLock

    Path(HASH_CACHE).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{HASH_CACHE}.lock"):
        write_json(HASH_CACHE, {**_load_cache(), **new})


def check_hub_lock(hub: dict, lock: dict | None, lock_path) -> None:
    """Under a lock: every hub artifact is in it with the revision the config asks, and a folder already
    downloaded holds the locked commit; else one line naming it."""
    from kinject.provenance.hub import locked_revision

    if lock is None:
        return
    for folder, spec in hub.items():
        commit = locked_revision(spec, folder, lock, lock_path)
        meta = Path(f"{folder}.json")
        if meta.exists():
            have = json.loads(meta.read_text()).get("commit")
            if have != commit:
                raise KinjectError(meta, f"{spec['repo']} was downloaded at commit {have}, but {lock_path} locks "
                                         f"{commit}; remove {folder} to fetch the locked commit, or `kinject lock` again")


def make_lock(manifest: dict) -> dict:
    """The lock from a run's manifest: what it resolved, without what it merely observed (packages, the cache)."""
    hub = {folder: {key: meta[key] for key in ("repo", "repo_type", "revision", "commit", "files")}
           for folder, meta in manifest["hub"].items()}
    pages = {task: pages for task, pages in manifest["pages"].items() if pages is not None}
    return {"lockfile_version": LOCKFILE_VERSION, "config": manifest["config"]["files"],
            "hub": hub, "pages": pages, "files": manifest["files"]}


def write_lock(config: dict, configfiles: list[str], manifest_path, out=None) -> str:
    """`kinject lock`: the manifest of a finished run of these config files, as the lock (config `lock`, else
    <config>.lock.json). A manifest built by other config files is refused: it would lock another study."""
    try:
        manifest = json.loads(Path(manifest_path).read_text())
    except FileNotFoundError:
        raise KinjectError(manifest_path, "not found: run the workflow first (snakemake all), then `kinject lock`")
    built_by = [os.path.normpath(entry["path"]) for entry in manifest["config"]["files"]]
    if built_by != [os.path.normpath(os.path.relpath(p)) for p in configfiles]:
        raise KinjectError(manifest_path, f"was built by {' '.join(built_by)}, not {' '.join(map(str, configfiles))}")
    out = out or config.get("lock") or default_lock_path(configfiles[-1])
    write_json(out, make_lock(manifest))
    return str(out)
