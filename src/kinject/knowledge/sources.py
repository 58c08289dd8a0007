"""Knowledge-base sources as data: a source is one ``KnowledgeSource`` entry naming the rule that reads it
(``fetch``, then ``clean_dump``, for MediaWiki pages; ``load_corpus`` for documents), the keys it needs and
the keys only it takes, the local files it reads (its rule's inputs, so editing one re-runs it) and those the
lock pins, and its own checks. The config checks (kinject.grid), the rules' routing (rules/common.smk) and
the lock read the entry; a new source is its reader plus one ``register`` call below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kinject.errors import KinjectError
from kinject.registry import Registry

# the files naming a MediaWiki knowledge base's pages, its dump's index, and the revisions it was pinned to
NAMED_FILES = ("titles", "hub_pages_file", "index", "revisions_file")
# the lock's local files of a source without its own: the dump or table, the title and hub-page lists
LOCKED_KEYS = ("path", "titles", "hub_pages_file")


def _named(kb: dict) -> list[str]:
    return [kb[key] for key in NAMED_FILES if key in kb]


def _locked(kb: dict) -> list[str]:
    return [kb[key] for key in LOCKED_KEYS if key in kb]


@dataclass(frozen=True)
class KnowledgeSource:
    name: str  # tasks.<t>.knowledge_base.source
    rule: str  # fetch (MediaWiki pages, then clean_dump) or load_corpus (the user's documents)
    inputs: Callable[[dict], list[str]]  # the local files its rule reads
    required: tuple[str, ...] = ()
    own_keys: frozenset = frozenset()  # keys no other source takes
    locked: Callable[[dict], list[str]] = _locked  # the local files the lock pins
    check: Callable[[dict, dict, str, str], None] | None = None  # (config, kb, key, config file)

    @property
    def pages(self) -> bool:
        """A knowledge base of MediaWiki pages (titles, hub pages and events select among them), not documents."""
        return self.rule == "fetch"


KNOWLEDGE_SOURCES = Registry("knowledge-base source")
register = KNOWLEDGE_SOURCES.register


def knowledge_source(kb: dict, key: str, config_file: str = "config") -> KnowledgeSource:
    """The registered source of a knowledge base at config key ``key``; one line naming the key, the value and
    the registered sources otherwise."""
    return KNOWLEDGE_SOURCES.lookup(kb["source"], f"{key}.source", config_file)


def _corpus_files(kb: dict) -> list[str]:
    from kinject.knowledge.corpus import corpus_files

    return [str(path) for path in corpus_files(kb["path"])]


def _check_mediawiki(config: dict, kb: dict, key: str, config_file: str) -> None:
    if not ("hub_pages_file" in kb or "titles" in kb):
        raise KinjectError(config_file, f"{key}.hub_pages_file (or titles) is required for source mediawiki")
    if "user_agent" not in config.get("mediawiki", {}):
        raise KinjectError(config_file, f"mediawiki.user_agent is required for {key}.source mediawiki")
    if "revisions_file" in kb and "as_of" not in kb:
        raise KinjectError(config_file, f"{key}.revisions_file needs {key}.as_of (the instant its revisions "
                           "were fetched as of)")


def _check_table(config: dict, kb: dict, key: str, config_file: str) -> None:
    if ("path" in kb) == ("dataset" in kb):
        raise KinjectError(config_file, f"{key}: source table needs path (a file) or dataset (a Hugging Face id), "
                           "one of them")
    missing = [k for k in ("split", "revision") if "dataset" in kb and k not in kb]
    if missing:
        raise KinjectError(config_file, f"{key}.{missing[0]} is required with dataset (a pinned revision: a commit)")


# The registered sources ---------------------------------------------------------------------------------------

register(KnowledgeSource("dump", "fetch", inputs=lambda kb: [kb["path"]] + _named(kb), required=("path",)))
register(KnowledgeSource("mediawiki", "fetch", inputs=_named, check=_check_mediawiki))
register(KnowledgeSource("files", "load_corpus", inputs=_corpus_files, required=("path",), locked=_corpus_files))
register(KnowledgeSource("table", "load_corpus", inputs=lambda kb: [kb["path"]] if "path" in kb else [],
                         own_keys=frozenset({"text_column", "title_column", "id_column", "dataset", "config", "split",
                                             "revision"}), check=_check_table))
