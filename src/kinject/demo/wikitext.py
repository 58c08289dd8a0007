"""A knowledge base's pages in wiki markup: each article's stated facts with bold, links, citations,
infobox, table and See also (markup wikiextractor cleans back to exactly the registered sentences), plus
one redirect, Talk page and Category page that wikiextractor drops."""

from __future__ import annotations

import re

from kinject.demo.author import core_name
from kinject.demo.facts import StatedArticle
from kinject.demo.xml_dump import Page


def _link_targets(stated: list[StatedArticle]) -> dict[str, str]:
    """Name as written in a sentence -> title of the article it should link to."""
    return {core_name(sa.article.subject): sa.article.title for sa in stated}


def _spans(sentence: str, names) -> list[tuple[int, int, str]]:
    spans = []
    for name in sorted(names, key=len, reverse=True):
        for m in re.finditer(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", sentence):
            if all(m.end() <= a or m.start() >= b for a, b, _ in spans):
                spans.append((m.start(), m.end(), name))
                break
    return sorted(spans)


def _decorate(sentence: str, bold: str | None, targets: dict[str, str], linked: set[str], year_page: str | None) -> str:
    """Wiki markup that wikiextractor cleans back to exactly ``sentence``: bold, links, piped links."""
    marks = {}
    if bold:
        marks[bold] = f"'''{bold}'''"
    for name, title in targets.items():
        if name not in linked and name != bold:
            marks[name] = f"[[{name}]]" if name == title else f"[[{title}|{name}]]"
    year = re.search(r"\b1[5-9]\d\d\b", sentence) if year_page and "year" not in linked else None
    if year:  # the article's first year links to the "<year> in <archipelago>" page, as Wikipedia does
        marks[year.group()] = f"[[{year.group()} in {year_page}|{year.group()}]]"
    out, pos = [], 0
    for start, end, name in _spans(sentence, marks):
        out += [sentence[pos:start], marks[name]]
        linked.add("year" if year and name == year.group() else name)
        pos = end
    return "".join(out) + sentence[pos:]


def _ref(kb: str, source: str, paragraph: int, n: int) -> str:
    """The citation closing an article's paragraph: a book or news report (n numbers them in the dump)
    for the first, a named survey reference defined by the second and reused by later ones."""
    if paragraph == 1:
        return f'<ref name="survey">{{{{cite web |title=Survey of {source} |publisher=Demo Wiki |year=2031}}}}</ref>'
    if paragraph > 1:
        return '<ref name="survey" />'
    if kb == "atlas":
        return (f"<ref>{{{{cite book |last=Hollin |first=M. |title=A Gazetteer of {source} |year={1880 + n % 40} "
                f"|page={12 + n}}}}}</ref>")
    return (f"<ref>{{{{cite news |title={source}: the year in review |work=The Evening Ledger "
            f"|date={1 + n % 28} December 2031}}}}</ref>")


def article_wikitext(sa: StatedArticle, kb: str, targets: dict[str, str], year_page: str | None, source: str,
                     first_ref: int) -> str:
    """The article's wikitext: short description, infobox, paragraphs under their section headings (marked
    up, each ending in a citation), its table, a See also list, references and its category."""
    art = sa.article
    lines = [f"{{{{Short description|{art.category.split(':', 1)[1]}}}}}",
             "{{" + art.infobox] + [f"| {k} = {v}" for k, v in art.fields] + ["}}"]
    if kb == "current_events":
        lines.insert(1, "{{Use dmy dates|date=December 2031}}")
    linked: set[str] = set()
    own = {k: v for k, v in targets.items() if v != art.title}
    heading = None
    for n, (section, facts) in enumerate(sa.paragraphs):
        if section != heading:
            lines += ["", f"== {section} =="]
            heading = section
        elif n:
            lines.append("")
        bold = core_name(art.subject) if n == 0 else None
        parts = [_decorate(f.sentence, bold if i == 0 else None, own, linked, year_page) for i, f in enumerate(facts)]
        parts[-1] += _ref(kb, source, n, first_ref + n)
        lines.append(" ".join(parts))
        if n == 0 and art.table:
            lines += ["", "== Overview ==", "<!-- Figures from the latest survey; update them together. -->",
                      '{| class="wikitable sortable"', "|+ " + art.title, "! " + " !! ".join(art.table[0])]
            for row in art.table[1:]:
                lines += ["|-", "| " + " || ".join(row)]
            lines.append("|}")
    if art.see_also:
        lines += ["", "== See also =="] + [f"* [[{core_name(t)}]]" for t in art.see_also]
    lines += ["", "== References ==", "{{Reflist}}", "", f"[[{art.category}]]"]
    return "\n".join(lines)


def _redirect_title(title: str) -> str:
    election = re.fullmatch(r"2031 (\w+) election in (\w+)", title)
    if election:
        return f"{election[2]} {election[1]} election, 2031"
    if title.endswith(" Archipelago"):
        return title.replace(" Archipelago", " Islands")
    return f"{title} (alternative name)"


def kb_pages(kb: str, stated: list[StatedArticle], year_page: str | None, source: str) -> list[Page]:
    """The articles plus one redirect, one Talk page and one Category page (all dropped by wikiextractor)."""
    targets = _link_targets(stated)
    refs = [0]
    for sa in stated:
        refs.append(refs[-1] + len(sa.paragraphs))
    pages = [Page(sa.article.title, 0, article_wikitext(sa, kb, targets, year_page, source, refs[i]))
             for i, sa in enumerate(stated)]
    first, second = stated[0].article, stated[1].article
    redirect = Page(_redirect_title(first.title), 0, f"#REDIRECT [[{first.title}]]\n\n{{{{R from alternative name}}}}",
                    redirect=first.title)
    talk = Page(f"Talk:{second.title}", 1,
                f"{{{{WikiProject {kb.replace('_', ' ').title()}|class=B}}}}\n\n== Figures in the lead ==\n"
                f"Should the lead of [[{second.title}]] give the figures from the latest survey? "
                "[[User:Cartographer|Cartographer]] ([[User talk:Cartographer|talk]]) 10:12, 3 December 2031 (UTC)\n"
                ":Yes, with a citation. [[User:Surveyor|Surveyor]] 11:40, 3 December 2031 (UTC)")
    category = Page(first.category, 14,
                    f"Articles about {first.title}.\n\n[[Category:{kb.replace('_', ' ').capitalize()}]]")
    return [pages[0], redirect, *pages[1:3], talk, *pages[3:], category]
