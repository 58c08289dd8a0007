"""A loopback Hugging Face hub: the few routes huggingface_hub's snapshot_download uses, over real HTTP.

GET /api/{models|datasets}/{repo}/revision/{rev}   repo info: sha (the commit), siblings
GET /api/{models|datasets}/{repo}/tree/{rev}       the file list (one page: no Link header)
HEAD|GET /[datasets/]{repo}/resolve/{rev}/{file}   a file, with X-Repo-Commit, ETag (git blob sha1), Content-Length

Errors carry the hub's X-Error-Code header (RepoNotFound, RevisionNotFound, GatedRepo), which
huggingface_hub turns into its typed errors. A gated repo answers its files only with "Authorization: Bearer
<token>". Every request is recorded in ``FakeHub.requests``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from loopback import Handler


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_id(files: dict[str, bytes]) -> str:
    return hashlib.sha1(json.dumps({k: blob_sha1(v) for k, v in sorted(files.items())}).encode()).hexdigest()


def folder_files(folder) -> dict[str, bytes]:
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class FakeHub:
    """Repositories: (type, repo) -> {"refs": {name: commit}, "commits": {commit: {path: bytes}}, "gated": bool}."""

    def __init__(self, token: str = "hf_test_token"):
        self.repos: dict[tuple[str, str], dict] = {}
        self.token = token
        self.requests: list[str] = []

    def push(self, repo: str, files: dict[str, bytes], *, repo_type: str = "model", ref: str = "main",
             gated: bool = False) -> str:
        """A new commit of files on branch/tag ref; returns its id."""
        entry = self.repos.setdefault((repo_type, repo), {"refs": {}, "commits": {}, "gated": gated})
        commit = commit_id(files)
        entry["commits"][commit] = dict(files)
        entry["refs"][ref] = commit
        return commit

    def handler(self):
        hub = self

        class HubHandler(Handler):
            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def error(self, status, code, message):
                self.respond(status, json.dumps({"error": message}), X_Error_Code=code, X_Error_Message=message)

            def answer(self, head):
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                api = re.fullmatch(r"/api/(models|datasets)/(.+?)/(revision|tree)/([^/]+)", path)
                if api:
                    return self.api(api[1][:-1], api[2], api[3], api[4])
                file = re.fullmatch(r"/(datasets/)?(.+?)/resolve/([^/]+)/(.+)", path)
                if file:
                    return self.file("dataset" if file[1] else "model", file[2], file[3], file[4], head)
                self.error(404, "EntryNotFound", f"no route {path}")

            def commit(self, repo_type, repo, rev):
                entry = hub.repos.get((repo_type, repo))
                if entry is None:
                    self.error(404, "RepoNotFound", f"Repository {repo} not found")
                    return None, None
                commit = entry["refs"].get(rev, rev if rev in entry["commits"] else None)
                if commit is None:
                    self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                    return None, None
                return entry, commit

            def api(self, repo_type, repo, what, rev):
                entry, commit = self.commit(repo_type, repo, rev)
                if entry is None:
                    return
                files = entry["commits"][commit]
                if what == "revision":
                    body = {"id": repo, "sha": commit, "private": False, "gated": "auto" if entry["gated"] else False,
                            "siblings": [{"rfilename": name} for name in sorted(files)]}
                else:
                    body = [{"type": "file", "oid": blob_sha1(data), "size": len(data), "path": name}
                            for name, data in sorted(files.items())]
                self.respond(200, json.dumps(body))

            def file(self, repo_type, repo, rev, name, head):
                entry, commit = self.commit(repo_type, repo, rev)
                if entry is None:
                    return
                if entry["gated"] and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self.error(401, "GatedRepo", f"Access to model {repo} is restricted.")
                data = entry["commits"][commit].get(name)
                if data is None:
                    return self.error(404, "EntryNotFound", f"{name} does not exist at {rev}")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{blob_sha1(data)}"')
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        return HubHandler


def tiny_llama_files(tmp_path) -> dict[str, bytes]:
    """A tiny Llama (from_config, random weights) and a word-level tokenizer, as save_pretrained writes them."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(61)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    folder = Path(tmp_path) / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder_files(folder)
