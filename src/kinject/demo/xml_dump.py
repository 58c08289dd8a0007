"""MediaWiki XML export: pages (articles, redirects, talk and category pages) written as a dump that
wikiextractor reads like a real one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

NAMESPACES = [(-2, "Media"), (-1, "Special"), (0, ""), (1, "Talk"), (2, "User"), (3, "User talk"), (4, "Project"),
              (5, "Project talk"), (6, "File"), (7, "File talk"), (8, "MediaWiki"), (9, "MediaWiki talk"),
              (10, "Template"), (11, "Template talk"), (12, "Help"), (13, "Help talk"), (14, "Category"),
              (15, "Category talk"), (828, "Module"), (829, "Module talk")]


def _sha1_base36(text: str) -> str:
    n = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits.rjust(31, "0")


@dataclass
class Page:
    title: str
    ns: int
    text: str
    redirect: str | None = None


def page_xml(page: Page, page_id: int, timestamp: str) -> str:
    lines = ["  <page>", f"    <title>{escape(page.title)}</title>", f"    <ns>{page.ns}</ns>",
             f"    <id>{page_id}</id>"]
    if page.redirect:
        lines.append(f"    <redirect title={quoteattr(page.redirect)} />")
    lines += ["    <revision>", f"      <id>{page_id * 10 + 3}</id>", f"      <parentid>{page_id * 10 + 1}</parentid>",
              f"      <timestamp>{timestamp}</timestamp>", "      <contributor>",
              "        <username>Cartographer</username>",
              "        <id>4021</id>", "      </contributor>", "      <comment>copyedit</comment>",
              "      <model>wikitext</model>", "      <format>text/x-wiki</format>",
              f'      <text bytes="{len(page.text.encode("utf-8"))}" xml:space="preserve">{escape(page.text)}</text>',
              f"      <sha1>{_sha1_base36(page.text)}</sha1>", "    </revision>", "  </page>"]
    return "\n".join(lines)


def dump_xml(sitename: str, dbname: str, pages: list[Page], year: int) -> str:
    head = ['<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.10/ '
            'http://www.mediawiki.org/xml/export-0.10.xsd" version="0.10" xml:lang="en">',
            "  <siteinfo>", f"    <sitename>{sitename}</sitename>", f"    <dbname>{dbname}</dbname>",
            f"    <base>https://{dbname}.example.org/wiki/Main_Page</base>",
            "    <generator>MediaWiki 1.41.0</generator>",
            "    <case>first-letter</case>", "    <namespaces>"]
    for key, name in NAMESPACES:
        head.append(f'      <namespace key="{key}" case="first-letter">{name}</namespace>' if name
                    else f'      <namespace key="{key}" case="first-letter" />')
    head += ["    </namespaces>", "  </siteinfo>"]
    body = [page_xml(p, 100 + 7 * i, f"{year}-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{(7 * i) % 60:02d}:00Z")
            for i, p in enumerate(pages)]
    return "\n".join(head + body + ["</mediawiki>"]) + "\n"
