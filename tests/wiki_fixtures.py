"""MediaWiki exports for the tests, written as MediaWiki writes them, with what real dumps hold: HTML entities,
templates that leave empty brackets behind, disambiguation pages, redirects, other namespaces; plain or as
bzip2 (single and multistream) and gzip archives."""

import bz2
import gzip
from xml.sax.saxutils import escape

from kinject.knowledge.wikidump import ENWIKI_NAMESPACES, EXPORT_XMLNS, SiteInfo, export_header

HEAD = export_header(SiteInfo(EXPORT_XMLNS, "T", "t", "https://t.invalid/wiki/Main", "MediaWiki 1.41",
                               namespaces=ENWIKI_NAMESPACES))
TAIL = "</mediawiki>\n"


def page(pid, title, text, ns=0, redirect=None):
    """One <page>, one element per line (wikiextractor's own reader needs that); text is wikitext (escaped here)."""
    red = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{pid}</id>\n{red}    <revision>\n"
            f"      <id>{pid}0</id>\n      <timestamp>2031-01-01T00:00:00Z</timestamp>\n"
            f"      <text xml:space=\"preserve\">{escape(text)}</text>\n    </revision>\n  </page>\n")


def export(*pages) -> str:
    return HEAD + "".join(pages) + TAIL


PROSE = ("It is known for its old stone harbour, a market held every Thursday since the middle ages, and a "
         "lighthouse whose keepers have kept a logbook of every passing ship for two hundred years.")

# The patterns the issue found in a real English Wikipedia excerpt, as wikitext.
MESSY = {
    "Andorra": ("'''Andorra''' ({{IPAc-en|æ|n|ˈ|d|ɔːr|ə}}; {{lang-ca|Andorra}}), also called the Principality of "
                "the Valleys of Andorra ({{lang-ca|Principat de les Valls d'Andorra}}), is a sovereign landlocked "
                "country on the [[Iberian Peninsula]] in the eastern [[Pyrenees]]. " + PROSE),
    "Albania": ("'''Albania''' ({{IPAc-en|æ|l|ˈ|b|eɪ|n|i|ə}}, {{IPAc-en|ɔː|l|-}}; {{lang-sq|Shqipëri}}; ), "
                "officially the Republic of Albania, is a country in [[Southeast Europe]] on the "
                "[[Adriatic Sea|Adriatic]] coast.<ref>{{cite web|title=Albania}}</ref> " + PROSE),
    "AT&T": ("'''AT&T Inc.''' is an American telecommunications provider. Telecommunications provider AT&T "
             "hired [[Brasfield & Gorrie]] to build its tower, 10&nbsp;km from the river &ndash; a tower of "
             "&quot;glass&quot; and steel ({{convert|300|m}}). " + PROSE),
    "Albert Marr": ("'''Albert Marr''' ({{IPA-de|ˈalbɛʁt|lang}}; 14 March 1879 – 18 April 1955{{efn|born}}) was "
                    "an invented cartographer of the [[Orsan Sea]] ( ) and its islands [ ]. " + PROSE),
}
DISAMBIGUATION = {
    "Austin (disambiguation)": "'''Austin''' may refer to a city or a person. " + PROSE + "\n{{disambiguation}}",
    "Mercury": "'''Mercury''' may refer to a planet, an element or a god. " + PROSE + "\n{{Disambig|planet}}",
    "Marr": "'''Marr''' is a surname shared by many invented people. " + PROSE + "\n{{hndis|Marr}}",
}


def messy_pages() -> list[str]:
    """Four articles with the issue's patterns, three disambiguation pages, a redirect, a talk page."""
    pages = [page(i, title, text) for i, (title, text) in enumerate(MESSY.items(), 1)]
    pages += [page(10 + i, title, text) for i, (title, text) in enumerate(DISAMBIGUATION.items())]
    pages.append(page(20, "Andorra la Vella", "#REDIRECT [[Andorra]]", redirect="Andorra"))
    pages.append(page(21, "Talk:Andorra", "Is the lead sentence too long? " + PROSE, ns=1))
    return pages


def write_dump(path, pages: list[str], fmt: str = "xml"):
    """Write an export as plain XML, bz2, gz, or multistream bz2 (header, pages in groups of two, footer each
    their own bzip2 stream, as Wikipedia's pages-articles-multistream files are written)."""
    text = export(*pages)
    if fmt == "xml":
        path.write_text(text, encoding="utf-8")
    elif fmt == "bz2":
        path.write_bytes(bz2.compress(text.encode()))
    elif fmt == "gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif fmt == "multistream":
        parts = [HEAD] + ["".join(pages[i: i + 2]) for i in range(0, len(pages), 2)] + [TAIL]
        path.write_bytes(b"".join(bz2.compress(p.encode()) for p in parts))
    else:
        raise ValueError(fmt)
    return path
