"""Hub artifacts (models, the embedder, MMLU) fetched once, by local rules, at a pinned revision.

A model, embedder or dataset given by hub id is downloaded by a rule that runs on the submit host
(``rules/hub.smk``) with ``huggingface_hub.snapshot_download`` into ``results/hub/...`` (the paths are in
``kinject.grid``), and ``<folder>.json`` next to it records the repository, the revision asked, the commit it
resolved to and every file's sha256. Every other job loads that local folder with the hub switched off
(``OFFLINE_ENV``), so compute nodes without network run the whole grid.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_json
from kinject.paths import (
    HUB_CONTROL_DIR,
    HUB_DATASET_DIR,
    HUB_EMBEDDER_DIR,
    HUB_MODEL_DIR,
    HUB_RERANKER_DIR,
    results_root,
    rooted,
)
from kinject.qa.sources import QUESTION_SOURCES
from kinject.weights import shard_problem

log = logging.getLogger(__name__)

# Set for every job but the downloads (rules/common.smk puts them in the workflow's environment, which
# local jobs and SLURM jobs inherit): transformers, sentence-transformers and datasets never reach the hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TOKEN_ENV = "HF_TOKEN"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
COMMIT = re.compile(r"[0-9a-f]{40}")


def is_hub_id(name: str, root=".") -> bool:
    """A hub id ("org/name"), not a local folder: an existing directory (or an absolute or ./ path) is local."""
    if Path(root, name).is_dir() or name.startswith(("/", "./", "../", "~")):
        return False
    return bool(HUB_ID.fullmatch(name))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def model_folder_problem(folder) -> str | None:
    """What a local model folder (config ``models.<m>.pretrained``) lacks for ``from_pretrained``, or None:
    ``config.json``, weights (``*.safetensors`` or ``pytorch_model*.bin``, every shard its index lists) and a
    tokenizer. Only names are looked at: the folder is checked when the workflow starts, before any job."""
    folder = Path(folder)
    if not folder.is_dir():
        return "no such folder" if not folder.exists() else "not a folder"
    if not (folder / "config.json").is_file():
        return "no config.json in the model folder (save_pretrained writes it)"
    if (problem := shard_problem(folder)):
        return problem
    if not [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]:
        return "no weights in the model folder (*.safetensors or pytorch_model*.bin)"
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return f"no tokenizer in the model folder ({', '.join(TOKENIZER_FILES)})"
    return None


def check_local_models(config: dict, root=".") -> None:
    """Every model given as a local folder has what loading it needs; else one line naming the folder and
    what is missing, when the workflow starts (not hours later, in the first job that loads it)."""
    for name, model in config["models"].items():
        path = model.get("pretrained")
        if path is None or is_hub_id(path, root):
            continue
        problem = model_folder_problem(Path(root, os.path.expanduser(path)))
        if problem:
            raise KinjectError(path, f"{problem} (models.{name}.pretrained)")


def reranker_dir(model: str) -> str:
    """The folder of a cross-encoder (retrieval.rerank.model) by hub id: HUB_RERANKER_DIR, '/' as '--'."""
    return HUB_RERANKER_DIR.format(reranker=model.replace("/", "--"))


def hub_artifacts(config: dict, root=".") -> dict[str, dict]:
    """Every hub artifact of a config, by its folder: {folder: {key, repo, repo_type, revision, allow_patterns}}.

    ``key`` is the config key that names it (models.<m>, embedder, tasks.<t>.questions). An MMLU task downloads
    its subject's files only (``<subject>/*``), so five subjects do not pull the whole dataset five times.
    """
    out, study = {}, results_root(config)  # the folders are the study's own
    for name, model in config["models"].items():
        if "pretrained" in model and is_hub_id(model["pretrained"], root):
            out[rooted(HUB_MODEL_DIR.format(model=name), study)] = {
                "key": f"models.{name}", "repo": model["pretrained"], "repo_type": "model",
                "revision": model.get("revision", "main"), "allow_patterns": None}
    emb = config["embedder"]
    if "pretrained" in emb and is_hub_id(emb["pretrained"], root):
        out[rooted(HUB_EMBEDDER_DIR.format(embedder=emb["name"]), study)] = {
            "key": "embedder", "repo": emb["pretrained"], "repo_type": "model",
            "revision": emb.get("revision", "main"), "allow_patterns": None}
    rerank = config.get("retrieval", {}).get("rerank", {})
    if "rerank" in config.get("retrieval", {}).get("retrievers", []) and is_hub_id(rerank.get("model", ""), root):
        out[rooted(reranker_dir(rerank["model"]), study)] = {
            "key": "retrieval.rerank.model", "repo": rerank["model"], "repo_type": "model",
            "revision": rerank.get("revision", "main"), "allow_patterns": None}
    for name, task in config["tasks"].items():
        q = task["questions"]
        if QUESTION_SOURCES[q["source"]].hub:
            out[rooted(HUB_DATASET_DIR.format(task=name), study)] = {
                "key": f"tasks.{name}.questions", "repo": q.get("dataset", "cais/mmlu"), "repo_type": "dataset",
                "revision": q.get("revision", "main"), "allow_patterns": [f"{q['subject']}/*"]}
    for name, q in config["evaluation"].get("controls", {}).items():
        if QUESTION_SOURCES[q["source"]].hub:
            out[rooted(HUB_CONTROL_DIR.format(control=name), study)] = {
                "key": f"evaluation.controls.{name}", "repo": q.get("dataset", "cais/mmlu"), "repo_type": "dataset",
                "revision": q.get("revision", "main"), "allow_patterns": [f"{q['subject']}/*"]}
    return out


def locked_revision(spec: dict, folder: str, lock: dict | None, lock_path: str | None) -> str:
    """The revision to download: the lock's commit where a lock is given (it must have locked the same repo
    and revision: a changed config against an old lock is one line, not a silent re-pin), else the config's."""
    if lock is None:
        return spec["revision"]
    entry = lock.get("hub", {}).get(folder)
    if entry is None:
        raise KinjectError(lock_path, f"has no entry for {folder} ({spec['key']}: {spec['repo']}); run "
                                      "`kinject lock` again after a run, or remove the lock from the config")
    if (entry["repo"], entry["revision"]) != (spec["repo"], spec["revision"]):
        raise KinjectError(lock_path, f"locked {folder} as {entry['repo']}@{entry['revision']} but {spec['key']} "
                                      f"now asks for {spec['repo']}@{spec['revision']}; run `kinject lock` again "
                                      "or remove the lock from the config")
    return entry["commit"]


def sha256_file(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder) -> dict[str, str]:
    """sha256 of every file of a downloaded folder (relative posix paths), huggingface_hub's .cache and
    Snakemake's .snakemake_timestamp (its mark on a directory output) left out."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(folder).parts and p.name != ".snakemake_timestamp"}


# weights for other frameworks, never loaded by torch; and the PyTorch pickles where safetensors exist (which
# transformers and sentence-transformers load first): a repository holding its weights twice is fetched once
OTHER_FRAMEWORKS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "openvino/*", "*.gguf", "*.mlmodel"]
PICKLED_WEIGHTS = ["*.bin", "*.pth", "*.pt", "*.ckpt"]


def model_ignore_patterns(files: list[str]) -> list[str]:
    """The files of a model repository not to download, given its file list."""
    has_safetensors = any(name.endswith(".safetensors") for name in files)
    return OTHER_FRAMEWORKS + (PICKLED_WEIGHTS if has_safetensors else [])


def _hub_error(spec: dict, revision: str, exc: Exception) -> KinjectError:
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{spec['repo']}@{revision}"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if isinstance(exc, GatedRepoError):
        token = "HF_TOKEN is not set" if not os.environ.get(TOKEN_ENV) else "the token in HF_TOKEN has no access"
        return KinjectError(spec["key"], f"{spec['repo']} is a gated repository and {token}: accept its license on "
                                         f"the hub, then set {TOKEN_ENV} to a token of that account")
    if isinstance(exc, RevisionNotFoundError):
        return KinjectError(spec["key"], f"{spec['repo']} has no revision {revision!r} on {endpoint}")
    if isinstance(exc, RepositoryNotFoundError):
        return KinjectError(spec["key"], f"no {spec['repo_type']} repository {spec['repo']!r} on {endpoint} "
                                         "(a typo, or private and HF_TOKEN not set)")
    if isinstance(exc, LocalEntryNotFoundError):
        return KinjectError(spec["key"], f"cannot download {what}: {endpoint} is unreachable (or HF_HUB_OFFLINE "
                                         "is set) and it was never downloaded")
    return KinjectError(spec["key"], f"cannot download {what} from {endpoint}: {type(exc).__name__}: {exc}")


def download(spec: dict, out_dir, meta_path, *, lock: dict | None = None, lock_path: str | None = None) -> str:
    """Download one hub artifact into ``out_dir`` at its (locked) revision; write ``meta_path``.

    The revision is resolved to a commit first and the files are fetched at that commit, so a branch that
    moves during the download cannot mix two commits. Under a lock, files whose sha256 differs from the
    lock's are one line naming them (the commit was rewritten on the hub).
    """
    # the workflow switches the hub off for every job; this one is the exception, before the import reads it
    for name in OFFLINE_ENV:
        os.environ.pop(name, None)
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    folder = str(out_dir)
    revision = locked_revision(spec, folder, lock, lock_path)
    token = os.environ.get(TOKEN_ENV) or None
    try:
        info = huggingface_hub.HfApi(token=token).repo_info(spec["repo"], repo_type=spec["repo_type"],
                                                            revision=revision)
        commit = info.sha
        ignore = None
        if spec["repo_type"] == "model" and spec["allow_patterns"] is None:
            ignore = model_ignore_patterns([sibling.rfilename for sibling in info.siblings or []])
            log.info("%s: not downloading %s", spec["repo"], ", ".join(ignore))
        with atomic_path(out_dir, directory=True) as tmp:
            huggingface_hub.snapshot_download(spec["repo"], repo_type=spec["repo_type"], revision=commit,
                                              local_dir=tmp, allow_patterns=spec["allow_patterns"],
                                              ignore_patterns=ignore, token=token)
            shutil.rmtree(Path(tmp, ".cache"), ignore_errors=True)
            files = folder_hashes(tmp)
            if not files:
                raise KinjectError(spec["key"], f"{spec['repo']}@{commit} has no file matching "
                                                f"{spec['allow_patterns']}")
            if lock is not None:
                check_locked_files(folder, files, lock["hub"][folder]["files"], lock_path)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        if isinstance(exc, KinjectError):
            raise
        raise _hub_error(spec, revision, exc) from None
    except Exception as exc:  # httpx's connection errors escape repo_info
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpx2", "httpcore"):
            raise
        raise _hub_error(spec, revision, LocalEntryNotFoundError(str(exc))) from None
    meta = {"repo": spec["repo"], "repo_type": spec["repo_type"], "revision": spec["revision"], "commit": commit,
            "allow_patterns": spec["allow_patterns"], "files": files}
    write_json(meta_path, meta)
    log.info("%s: %s@%s -> commit %s, %d files", folder, spec["repo"], spec["revision"], commit, len(files))
    return f"{spec['repo']}@{spec['revision']} = {commit[:12]}, {len(files)} files"


def check_locked_files(folder: str, files: dict[str, str], locked: dict[str, str], lock_path) -> None:
    """A downloaded folder against its lock: the same files with the same sha256, else one line naming one."""
    for name in sorted(set(files) | set(locked)):
        if files.get(name) != locked.get(name):
            state = ("is missing" if name not in files else "is not in the lock" if name not in locked
                     else f"has sha256 {files[name][:12]}, the lock {locked[name][:12]}")
            raise KinjectError(lock_path, f"{folder}/{name} {state}: the hub's commit no longer matches the lock")
