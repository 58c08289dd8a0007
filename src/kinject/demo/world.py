"""The demo's fictional world: two knowledge bases no model can know, generated from one seed.

    python -m kinject.demo.world --out resources/demo

writes (byte-identically on every run): ``atlas.xml`` and ``current_events.xml`` (MediaWiki XML exports),
``mmlu/data/{dev,test}/atlas_{dev,test}.csv`` (an MMLU subject in the original CSV layout),
``world.json`` (the fact registry the offline author reads) and ``pretrain.jsonl`` (a corpus of other,
disjoint fictional facts for the demo's tiny base model).

Every article sentence states exactly one (subject, relation, object) fact, names its subject in full and
draws its object from a typed domain, so questions and distractors come straight from the registry.
The registry stores each sentence as wikiextractor leaves it (links and bold removed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from kinject.demo.author import Fact, core_name
from kinject.demo.lexicon import (COLOURS, CODAS, COMMODITIES, DESTINATIONS, INDUSTRIES, INNER, MONTHS,
                                  MOTTOS, ONSETS, PARTY_WORDS, PRODUCTS, RELATIONS, RESEARCH, SCORES,
                                  TITLE_ADJ, TITLE_NOUN, TOPICS, VOWELS, WRAPPERS)
from kinject.io import write_text

SEED = 2031
N_PARAPHRASES = 12
N_PRETRAIN_WORLDS = 5

# ------------------------------------------------------------------------------------------------- values


class Names:
    """Unique made-up names (shared by both KBs and the pre-training worlds, so no name repeats)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.taken: set[str] = set()

    def word(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or self.rng.choice([2, 2, 2, 3])
            inner = "".join(self.rng.choice(INNER) + self.rng.choice(VOWELS) for _ in range(n - 1))
            w = (self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + inner + self.rng.choice(CODAS)).capitalize()
            if 4 <= len(w) <= 10 and w.lower() not in self.taken:
                self.taken.add(w.lower())
                return w

    def person(self) -> str:
        return f"{self.word(2)} {self.word()}"


def _thousands(n: int) -> str:
    return f"{n:,}"


def _random_date(rng: random.Random, months=range(12), year: int = 2031) -> str:
    return f"{rng.randint(1, 28)} {MONTHS[rng.choice(list(months))]} {year}"


def _date_after(date: str, rng: random.Random, min_days: int, max_days: int) -> str:
    d, m, y = date.split()
    total = min(12 * 28 - 1, MONTHS.index(m) * 28 + int(d) - 1 + rng.randint(min_days, max_days))
    return f"{total % 28 + 1} {MONTHS[total // 28]} {y}"


# ------------------------------------------------------------------------------------------------ articles


@dataclass
class Article:
    """One encyclopedia page: its sections of fact paragraphs (each fact a (subject, relation, object))."""

    title: str
    subject: str
    infobox: str
    fields: list[tuple[str, str]]
    category: str
    sections: list[tuple[str | None, list[list[tuple[str, str, str]]]]]
    table: list[list[str]] | None = None
    see_also: list[str] = field(default_factory=list)


def _about(subject: str, *facts) -> list[tuple[str, str, str]]:
    return [(subject, rel, obj) for rel, obj in facts]


@dataclass
class KB:
    name: str
    articles: list[Article]
    pools: dict[str, list[str]]


def build_atlas(rng: random.Random, names: Names) -> KB:
    """The archipelago: islands, towns and their landmarks, rivers, mountains, two people, two bodies."""
    arch = f"the {names.word()} Archipelago"
    islands = [f"{names.word()} Island" for _ in range(6)]
    towns = [names.word() for _ in range(8)]
    rivers = [f"the {names.word()} River" for _ in range(3)]
    mountains = [f"Mount {names.word()}" for _ in range(2)]
    persons = [names.person() for _ in range(48)]
    cities = [names.word() for _ in range(12)]
    ships = [names.word() for _ in range(6)]
    seas = [f"the {names.word()} Sea" for _ in range(5)]
    kingdoms = [f"the Kingdom of {names.word()}" for _ in range(5)]
    currencies = [f"the {names.word()} {unit}" for unit in ["crown", "mark", "florin", "shilling", "thaler"]]
    languages = [names.word() + suffix for suffix in ["ese", "ic", "ish", "ese", "ic"]]
    parks = [f"the {names.word()} National Park" for _ in range(6)]
    saints = [f"Saint {names.word(2)}" for _ in range(10)]
    books = [f"{w} of the {a} {n}" for w, a, n in zip(["Notes", "Letters", "A Journal", "Logbook", "Memoirs"],
                                                      rng.sample(TITLE_ADJ, 5), rng.sample(TITLE_NOUN, 5))]
    company = f"the {names.word()} Trading Company"
    people = iter(persons[2:])

    explorer, governor = persons[0], persons[1]
    charted = rng.randint(1488, 1530)
    on_island = {t: islands[i % 6] for i, t in enumerate(towns)}
    town_pop = {t: rng.randint(12, 480) * 100 for t in towns}
    island_pop = {i: sum(p for t, p in town_pop.items() if on_island[t] == i) + rng.randint(8, 90) * 100
                  for i in islands}
    arch_pop = sum(island_pop.values()) + rng.randint(5, 40) * 100
    areas = {i: rng.randint(40, 900) for i in islands}
    settled = {i: charted + rng.randint(4, 60) for i in islands}
    founded = {t: settled[on_island[t]] + rng.randint(3, 90) for t in towns}
    capital = max(towns, key=town_pop.get)
    peak_elev = {m: rng.randint(14, 26) * 100 + rng.randint(0, 99) for m in mountains}
    mountain_island = dict(zip(mountains, islands[:2]))
    export = dict(zip(islands, rng.sample(COMMODITIES, 6)))
    industry = dict(zip(towns, rng.sample(INDUSTRIES, 8)))
    twins = dict(zip(towns, rng.sample(cities[2:], 8)))
    gov_from = charted + rng.randint(12, 30)
    earliest = min(towns, key=founded.get)

    def km2(n):
        return f"{_thousands(n)} square kilometres"

    def metres(n):
        return f"{_thousands(n)} metres"

    def km(n):
        return f"{n} kilometres"

    def rain():
        return f"{_thousands(rng.randint(60, 260) * 10)} millimetres"

    articles = []
    largest = max(islands, key=areas.get)
    highest = max(mountains, key=peak_elev.get)
    a = arch
    articles.append(Article(
        core_name(arch), arch, "Infobox islands", [("name", core_name(arch)), ("capital", f"[[{capital}]]"),
                                               ("population", _thousands(arch_pop)),
                                               ("currency", currencies[0])],
        f"Category:{core_name(arch)}",
        [(None, [_about(a, ("island_count", str(rng.randint(11, 19))), ("sea", seas[0]), ("capital", capital),
                       ("population", _thousands(arch_pop)),
                       ("language", languages[0]))]),
         ("History and geography", [_about(a, ("charted_by", explorer), ("charted_year", str(charted)),
                                          ("currency", currencies[0]), ("largest_island", largest),
                                          ("highest_peak", highest),
                                          ("area", km2(sum(areas.values()) + rng.randint(5, 60))))])],
        table=[["Island", "Area", "Population"]]
        + [[f"[[{i}]]", f"{areas[i]} km2", _thousands(island_pop[i])] for i in islands],
        see_also=[islands[0], capital, explorer]))

    for i in islands:
        towns_here = [t for t in towns if on_island[t] == i]
        peak = next((m for m in mountains if mountain_island[m] == i), None)
        top = ("highest_peak", peak) if peak else ("highest_point",
                                                   metres(rng.randint(2, 13) * 100 + rng.randint(0, 99)))
        ferry = capital if on_island[capital] != i else max((t for t in towns if on_island[t] != i), key=town_pop.get)
        articles.append(Article(
            i, i, "Infobox island",
            [("name", i), ("area_km2", str(areas[i])), ("population", _thousands(island_pop[i]))],
            f"Category:Islands of {arch}",
            [(None, [_about(i, ("area", km2(areas[i])), ("population", _thousands(island_pop[i])),
                           ("largest_town", max(towns_here, key=town_pop.get)), top,
                           ("villages", str(rng.randint(3, 30))))]),
             ("History and economy", [_about(i, ("settled_year", str(settled[i])), ("main_export", export[i]),
                                            ("coastline", km(rng.randint(30, 260))), ("rainfall", rain()),
                                            ("ferry_from", ferry))])]))

    landmark_kinds = ["port", "lighthouse", "cathedral", "museum", "bridge"]
    for n, t in enumerate(towns):
        kinds = [landmark_kinds[(n + k) % 5] for k in (0, 1, 3)]
        articles.append(Article(
            t, t, "Infobox settlement", [("name", t), ("island", f"[[{on_island[t]}]]"),
                                         ("population_total", _thousands(town_pop[t])),
                                         ("established", str(founded[t]))],
            f"Category:Towns of {arch}",
            [(None, [_about(t, ("on_island", on_island[t]), ("population", _thousands(town_pop[t])),
                           ("industry", industry[t]), ("mayor", next(people)), ("twin", twins[t]))]),
             ("History", [_about(t, ("founded_year", str(founded[t])), ("founded_by", next(people)),
                                ("charter_year", str(founded[t] + rng.randint(10, 80))), ("patron", saints[n]),
                                ("fair_month", rng.choice(MONTHS)))]),
             ("Landmarks", [[f for k in kinds for f in _landmark(k, t, founded[t], rng, names, people)]])]))

    for r, i in zip(rivers, islands[:3]):
        mouth_town = next(t for t in towns if on_island[t] == i)
        source = [(r, "source", m) for m in mountains if mountain_island[m] == i]
        articles.append(Article(
            core_name(r), r, "Infobox river", [("name", core_name(r)), ("mouth", f"[[{mouth_town}]]")],
            f"Category:Rivers of {arch}",
            [(None, [_about(r, ("on_island", i), ("length", km(rng.randint(12, 95)))) + source
                     + _about(r, ("mouth", mouth_town), ("bridges_n", str(rng.randint(2, 19))))]),
             ("Hydrology", [_about(r, ("tributaries", str(rng.randint(3, 14))), ("navigable", km(rng.randint(4, 11))),
                                  ("basin", km2(rng.randint(60, 700))),
                                  ("discharge", f"{rng.randint(4, 90)} cubic metres"))])]))

    for n, m in enumerate(mountains):
        articles.append(Article(
            m, m, "Infobox mountain", [("name", m), ("elevation_m", str(peak_elev[m]))],
            f"Category:Mountains of {arch}",
            [(None, [_about(m, ("on_island", mountain_island[m]), ("elevation", metres(peak_elev[m])),
                            ("park", parks[n]),
                           ("huts", str(rng.randint(2, 9))), ("snow_months", str(rng.randint(2, 7))))]),
             ("Climbing history", [_about(m, ("first_ascent_year", str(rng.randint(1780, 1890))),
                                         ("first_ascent_by", next(people)),
                                         ("last_eruption", str(rng.randint(1600, 1990))),
                                         ("trails", str(rng.randint(2, 12))))])]))

    born = charted - rng.randint(28, 45)
    articles.append(Article(
        explorer, explorer, "Infobox explorer", [("name", explorer), ("birth_date", str(born))],
        "Category:Explorers", [
            (None, [_about(explorer, ("born_year", str(born)), ("born_in", cities[0]), ("served", kingdoms[0]),
                          ("children", str(rng.randint(2, 9))), ("painter", next(people)))]),
            ("Voyage", [_about(explorer, ("ship", ships[0]), ("crew", str(rng.randint(40, 120))),
                              ("expedition_ships", str(rng.randint(3, 7))), ("journal", books[0]),
                              ("died_year", str(charted + rng.randint(5, 25))))])]))
    gov_born = gov_from - rng.randint(30, 45)
    gov_until = gov_from + rng.randint(6, 18)
    articles.append(Article(
        governor, governor, "Infobox officeholder", [("name", governor), ("office", f"Governor of {core_name(arch)}")],
        f"Category:Governors of {arch}", [
            (None, [_about(governor, ("born_year", str(gov_born)), ("born_in", cities[1]),
                          ("governor_from", str(gov_from)), ("governor_until", str(gov_until)),
                          ("spouse", next(people)))]),
            ("Later life", [_about(governor, ("children", str(rng.randint(2, 9))), ("painter", next(people)),
                                  ("died_year", str(gov_until + rng.randint(4, 20))), ("buried_in", earliest))])]))

    company_founded = gov_from + rng.randint(1, 5)
    articles.append(Article(
        core_name(company), company, "Infobox company",
        [("name", core_name(company)), ("founded", str(company_founded))],
        f"Category:Companies of {arch}", [
            (None, [_about(company, ("founded_year", str(company_founded)), ("founded_by", governor),
                          ("headquarters", capital), ("charter_from", kingdoms[1]), ("first_director", next(people)))]),
            ("Trade", [_about(company, ("trade", export[islands[3]]), ("fleet", str(rng.randint(12, 60))),
                             ("warehouses", str(rng.randint(5, 40))),
                             ("dissolved_year", str(company_founded + rng.randint(90, 220))))])]))
    uni = f"the University of {capital}"
    uni_founded = rng.randint(1700, 1880)
    articles.append(Article(
        core_name(uni), uni, "Infobox university", [("name", core_name(uni)), ("established", str(uni_founded))],
        f"Category:Universities in {arch}", [
            (None, [_about(uni, ("founded_year", str(uni_founded)),
                           ("charter_year", str(uni_founded + rng.randint(2, 40))), ("first_rector", next(people)),
                           ("motto", rng.choice(MOTTOS)), ("colours", rng.choice(COLOURS)))]),
            ("Organisation", [_about(uni, ("students", _thousands(rng.randint(8, 160) * 50)),
                                    ("professors", str(rng.randint(40, 600))), ("faculties", str(rng.randint(3, 11))),
                                    ("volumes", _thousands(rng.randint(40, 900) * 1000)))])],
        see_also=[capital, company]))

    pools = {"town": towns, "island": islands, "mountain": mountains + [f"Mount {names.word()}" for _ in range(3)],
             "person": persons, "city": cities, "ship": ships, "sea": seas, "kingdom": kingdoms,
             "currency": currencies, "language": languages, "park": parks, "saint": saints, "book": books,
             "commodity": COMMODITIES, "industry": INDUSTRIES, "month": MONTHS, "motto": MOTTOS, "colours": COLOURS}
    return KB("atlas", articles, pools)


def _landmark(kind: str, town: str, founded: int, rng: random.Random, names: Names, people) -> list[tuple]:
    def after(lo, hi):
        return str(max(founded + 5, rng.randint(lo, hi)))

    if kind == "port":
        s = f"the Port of {town}"
        return [(s, "opened_year", after(founded + 5, founded + 120)), (s, "berths", str(rng.randint(4, 40)))]
    if kind == "lighthouse":
        s = f"the {town} Lighthouse"
        return [(s, "built_year", after(1700, 1890)), (s, "height", f"{rng.randint(14, 62)} metres")]
    if kind == "cathedral":
        s = f"Saint {names.word()} Cathedral"
        return [(s, "consecrated_year", after(founded + 10, founded + 150)), (s, "architect", next(people))]
    if kind == "museum":
        s = f"the {town} Museum"
        return [(s, "founded_year", after(1840, 1960)), (s, "objects", _thousands(rng.randint(8, 300) * 500))]
    s = f"the {names.word()} Bridge"
    return [(s, "opened_year", after(1820, 1960)), (s, "span", f"{rng.randint(60, 900)} metres")]


def build_current_events(rng: random.Random, names: Names) -> KB:
    """News of 2031: elections, prizes, launches, treaties, cup finals, companies, films, infrastructure."""
    countries = [names.word() + suffix for suffix in ["ia", "land", "onia", "ara", "ia", "land", "ia", "ara"]]
    cities = [names.word() for _ in range(16)]
    persons = [names.person() for _ in range(80)]
    parties = [f"the {w} Party" for w in rng.sample(PARTY_WORDS, 7)]
    monitors = [f"the {names.word()} {k}" for k in ["Election Commission", "Observer Mission",
                                                   "Institute for Democracy", "Election Watch", "Civic Monitor"]]
    agencies = [f"the {names.word()} Space Agency" for _ in range(5)]
    spaceports = [f"the {names.word()} Spaceport" for _ in range(5)]
    rockets = [f"{names.word()} {rng.randint(2, 9)}" for _ in range(6)]
    teams = [f"{c} {k}" for c, k in zip(cities, ["Rovers", "United", "Athletic", "Wanderers", "City", "Rangers",
                                                  "Albion", "Harriers"])]
    stadiums = [f"the {names.word()} Arena" for _ in range(3)] + [f"{names.word()} Stadium" for _ in range(3)]
    festivals = [f"the {c} Film Festival" for c in cities[8:13]]
    companies = [f"{names.word()} {k}" for k in ["Systems", "Dynamics", "Energy", "Robotics", "Pictures", "Studios",
                                                 "Construction", "Engineering", "Labs", "Networks", "Biotech",
                                                 "Software"]]
    products = [f"the {names.word()} {k}" for k in PRODUCTS]
    titles = [f"The {a} {n}" for a, n in zip(rng.sample(TITLE_ADJ, 8), rng.sample(TITLE_NOUN, 8))]
    people = iter(persons)
    articles = []

    def add(subject, infobox, category, sections, **extra):
        fields = [("name", core_name(subject))] + [(r, o) for _, r, o in sections[0][1][0][:2]]
        articles.append(Article(core_name(subject), subject, infobox, fields, category, sections, **extra))

    elections = [("presidential", countries[0]), ("general", countries[1]), ("presidential", countries[2]),
                 ("mayoral", cities[0]), ("general", countries[3])]
    for n, (kind, place) in enumerate(elections):
        s = f"the 2031 {kind} election in {place}"
        held = _random_date(rng, range(1, 10))
        winner, runner, party = next(people), next(people), rng.choice(parties)
        add(s, "Infobox election", "Category:2031 elections", [
            (None, [[(s, "held_on", held), (s, "won_by", winner), (s, "winner_party", party),
                     (s, "turnout", f"{rng.randint(450, 860) / 10:.1f} percent"),
                     (s, "candidates", str(rng.randint(3, 11)))]]),
            ("Results", [[(s, "winner_share", f"{rng.randint(380, 660) / 10:.1f} percent"), (s, "runner_up", runner),
                          (s, "votes_cast", _thousands(rng.randint(90, 9000) * 1000 + rng.randint(0, 999))),
                          (s, "sworn_in", _date_after(held, rng, 25, 60)), (s, "observers", rng.choice(monitors))]])],
            table=[["Candidate", "Party", "Result"], [f"[[{winner}]]", core_name(party), "Elected"],
                   [runner, core_name(rng.choice([p for p in parties if p != party])), "Defeated"]] if n == 0 else None)

    for n, (field_name, work) in enumerate([("Literature", "for_work"), ("Music", "for_work"),
                                            ("Physics", "for_research"), ("Medicine", "for_research")]):
        s = f"the 2031 {names.word()} Prize for {field_name}"
        add(s, "Infobox award", "Category:2031 awards", [
            (None, [[(s, "announced_on", _random_date(rng, range(2, 11))), (s, "awarded_to", next(people)),
                     (s, work, titles[n] if work == "for_work" else rng.choice(RESEARCH)),
                     (s, "winner_country", rng.choice(countries))]]),
            ("Ceremony", [[(s, "ceremony_city", rng.choice(cities)),
                           (s, "prize_money", f"{_thousands(rng.randint(10, 120) * 10000)} dollars"),
                           (s, "jury_chair", next(people)), (s, "nominees", str(rng.randint(4, 16)))]])])

    for k in ["probe", "space telescope", "lunar lander", "weather satellite"]:
        s = f"the {names.word()}-{rng.randint(1, 6)} {k}"
        add(s, "Infobox spaceflight", "Category:Spacecraft launched in 2031", [
            (None, [[(s, "launched_on", _random_date(rng)), (s, "launched_by", rng.choice(agencies)),
                     (s, "launch_site", rng.choice(spaceports)),
                     (s, "destination", "the Moon" if k == "lunar lander" else rng.choice(DESTINATIONS))]]),
            ("Mission", [[(s, "rocket", rng.choice(rockets)),
                          (s, "mass", f"{_thousands(rng.randint(300, 9000))} kilograms"),
                          (s, "cost", f"{rng.randint(3, 45) / 10:.1f} billion dollars"),
                          (s, "mission_director", next(people))]])])

    for k in ["Accord", "Convention", "Protocol"]:
        s = f"the {names.word()} {k}"
        signed = _random_date(rng, range(0, 8))
        add(s, "Infobox treaty", "Category:Treaties of 2031", [
            (None, [[(s, "signed_on", signed), (s, "signed_in", rng.choice(cities)),
                     (s, "signatories", str(rng.randint(3, 40))), (s, "topic", rng.choice(TOPICS)),
                     (s, "depositary", rng.choice(countries))]]),
            ("Entry into force", [[(s, "negotiator", next(people)),
                                                   (s, "in_force", _date_after(signed, rng, 30, 120)),
                                                   (s, "duration", str(rng.randint(5, 50))),
                                                   (s, "secretariat", rng.choice(cities))]])])

    for k in ["Cup", "League", "Shield", "Trophy"]:
        s = f"the 2031 {names.word()} {k} final"
        winner, loser = rng.sample(teams, 2)
        add(s, "Infobox football match", "Category:2031 in sport", [
            (None, [[(s, "held_on", _random_date(rng)), (s, "winner_team", winner), (s, "loser_team", loser),
                     (s, "score", rng.choice(SCORES))]]),
            ("Match", [[(s, "venue", rng.choice(stadiums)),
                        (s, "attendance", _thousands(rng.randint(8000, 90000))),
                        (s, "player_of_match", next(people)), (s, "winning_coach", next(people))]])])

    for n, c in enumerate(companies[:4]):
        add(c, "Infobox company", "Category:Companies", [
            (None, [[(c, "hq_city", rng.choice(cities)), (c, "founded_year", str(rng.randint(1975, 2020))),
                     (c, "founded_by", next(people)), (c, "employees", _thousands(rng.randint(300, 90000))),
                     (c, "revenue", f"{rng.randint(4, 180) / 10:.1f} billion dollars")]]),
            ("2031", [[(c, "ceo", next(people)), (c, "acquired", companies[8 + n]), (c, "product", products[n]),
                       (c, "debut", _random_date(rng))]])])

    for _ in range(3):
        s = f"the film {rng.choice(TITLE_ADJ)} {names.word()}"
        add(s, "Infobox film", "Category:2031 films", [
            (None, [[(s, "director", next(people)), (s, "lead_actor", next(people)),
                     (s, "studio", rng.choice(companies[4:6])),
                     (s, "runtime", f"{rng.randint(84, 171)} minutes"), (s, "composer", next(people))]]),
            ("Release", [[(s, "premiere_festival", rng.choice(festivals)),
                          (s, "premiere_date", _random_date(rng, range(0, 9))),
                          (s, "budget", f"{rng.randint(2, 180)} million dollars"),
                          (s, "box_office", f"{rng.randint(3, 900)} million dollars")]])])

    works = [f"the {names.word()} Bridge", f"the {names.word()} Tunnel",
             f"Line {rng.randint(2, 9)} of the {cities[1]} Metro"]
    for s in works:
        add(s, "Infobox infrastructure", "Category:Infrastructure completed in 2031", [
            (None, [[(s, "opened_on", _random_date(rng)),
                     (s, "route_length", f"{rng.randint(8, 300) / 10:.1f} kilometres"),
                     (s, "cost", f"{rng.randint(3, 45) / 10:.1f} billion dollars"), (s, "architect", next(people))]]),
            ("Construction and use", [[(s, "builder", rng.choice(companies[6:8])),
                                       (s, "build_years", str(rng.randint(2, 12))),
                                       (s, "terminus", rng.choice(cities[2:])),
                                       (s, "daily_users", _thousands(rng.randint(20, 900) * 100))]])],
            see_also=[companies[6]] if s.endswith("Tunnel") else [])

    pools = {"person": persons, "party": parties, "monitor": monitors, "city": cities, "country": countries,
             "agency": agencies, "spaceport": spaceports, "destination": DESTINATIONS, "rocket": rockets,
             "topic": TOPICS, "team": teams, "stadium": stadiums, "score": SCORES, "company": companies,
             "title": titles, "research": RESEARCH, "festival": festivals, "product": products,
             "year": [str(y) for y in range(1975, 2021, 3)]}
    return KB("current_events", articles, pools)


# ----------------------------------------------------------------------------------------- stating facts


def capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def renderings(kb: str, subject: str, relation: str, obj: str) -> list[str]:
    """Every sentence stating the fact: each clause, bare then inside each wrapper. A rendering whose
    sentence-start capital would alter the object (e.g. 'the X Sea ...') is left out."""
    out = []
    for wrapper in WRAPPERS[kb]:
        for clause in RELATIONS[relation].clauses:
            text = capfirst(wrapper.format(c=clause.format(s=subject, o=obj)))
            if obj in text and text not in out:
                out.append(text)
    return out


def _words(sentences) -> int:
    return sum(len(s.split()) for s in sentences)


def _paragraph_sentences(options: list[list[str]], rng: random.Random, kb: str, lead: str | None = None,
                         lo: int = 40, hi: int = 100) -> list[str]:
    """One bare rendering per fact (not opening with a number; an article's first sentence opens with
    its subject, ``lead``); a paragraph under lo words takes longer bare ones, then (one sentence at a
    time, each under a different wrapper) wrapped ones; over hi words, the shortest."""
    bare = [[r for r in opts if not _wrapped(r)] for opts in options]
    bare = [[r for r in b if not r[0].isdigit()] or b for b in bare]
    if lead:
        bare[0] = [r for r in bare[0] if r.startswith(capfirst(lead))] or bare[0]
    chosen = [rng.choice(b) for b in bare]
    for i in sorted(range(len(bare)), key=lambda i: _words([chosen[i]]) - _words([max(bare[i], key=len)])):
        if _words(chosen) >= lo:
            break
        chosen[i] = max(bare[i], key=len)
    prefixes = [w.split("{")[0] for w in WRAPPERS[kb] if w != "{c}"]
    for k, i in enumerate(reversed(range(len(options)))):
        if _words(chosen) >= lo:
            break
        wrapped = [r for r in options[i] if r.lower().startswith(prefixes[k % len(prefixes)])]
        chosen[i] = max(wrapped or options[i], key=len)
    if _words(chosen) > hi:
        chosen = [min(b, key=len) for b in bare]
    if not lo <= _words(chosen) <= hi:
        raise ValueError(f"paragraph of {_words(chosen)} words: {chosen}")
    return chosen


PREFIXES = tuple(w.split("{")[0] for ws in WRAPPERS.values() for w in ws if w != "{c}")


def _wrapped(rendering: str) -> bool:
    return rendering.lower().startswith(PREFIXES)


def make_fact(fid: str, kb: str, title: str, triple: tuple[str, str, str], sentence: str, options: list[str],
              rng: random.Random) -> Fact:
    subject, relation, obj = triple
    others = [r for r in options if r != sentence]
    rng.shuffle(others)
    closest = sorted(others, key=lambda r: abs(len(r) - len(sentence)))[:N_PARAPHRASES]
    bare = [r for r in closest if not _wrapped(r)]
    wrapped = [r for r in closest if _wrapped(r)]
    mixed = [r for pair in zip(bare, wrapped) for r in pair] + bare[len(wrapped):] + wrapped[len(bare):]
    questions = tuple(capfirst(q.format(s=subject)) for q in RELATIONS[relation].questions)
    return Fact(id=fid, kb=kb, title=title, subject=subject, relation=relation, object=obj,
                domain=RELATIONS[relation].domain, sentence=sentence, paraphrases=tuple(mixed[:N_PARAPHRASES]),
                question=questions[0], questions=questions)


@dataclass
class StatedArticle:
    article: Article
    paragraphs: list[tuple[str | None, list[Fact]]]  # (section heading, facts of one paragraph)


def state_kb(kb: KB, rng: random.Random) -> list[StatedArticle]:
    """Choose every paragraph's sentences and register each one as a Fact (ids in article order)."""
    out, n = [], 0
    for article in kb.articles:
        paragraphs = []
        for heading, paras in article.sections:
            for para in paras:
                options = [renderings(kb.name, *t) for t in para]
                sentences = _paragraph_sentences(options, rng, kb.name, None if paragraphs else article.subject)
                facts = []
                for triple, sentence, opts in zip(para, sentences, options):
                    n += 1
                    facts.append(make_fact(f"{kb.name}-{n:04d}", kb.name, article.title, triple, sentence, opts, rng))
                paragraphs.append((heading, facts))
        out.append(StatedArticle(article, paragraphs))
    return out


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _pad(values: list[str], rng: random.Random, want: int = 8) -> list[str]:
    """More values like the given numeric ones (same format and unit), so there are enough distractors."""
    values = list(values)
    for _ in range(200):
        if len(values) >= want:
            break
        sample = rng.choice(values)
        num = NUMBER.search(sample).group()
        decimals = len(num.split(".")[1]) if "." in num else 0
        x = max(1.0, float(num.replace(",", "")) * rng.uniform(0.5, 1.8))
        new = sample.replace(num, f"{x:,.{decimals}f}", 1)
        if new not in values:
            values.append(new)
    return values


def domain_pools(kb: KB, stated: list[StatedArticle], rng: random.Random) -> dict[str, list[str]]:
    """Per object domain of the kb: its entity pool (or the objects stated), padded; sorted."""
    by_domain: dict[str, list[str]] = {}
    for sa in stated:
        for _, facts in sa.paragraphs:
            for f in facts:
                by_domain.setdefault(f.domain, []).append(f.object)
    pools = {}
    for domain, objects in sorted(by_domain.items()):
        values = list(dict.fromkeys([*kb.pools.get(domain, []), *objects]))
        if len(values) < 8 and domain not in ("year", "date", "score") and NUMBER.search(values[0]):
            values = _pad(values, rng)
        if len(values) < 4:
            raise ValueError(f"{kb.name}: domain {domain} has only {len(values)} values")
        pools[domain] = sorted(values)
    return pools


# ------------------------------------------------------------------------------------------------ wikitext


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


# ---------------------------------------------------------------------------------------------- XML dump

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


# ------------------------------------------------------------------------------------------------- MMLU


def mmlu_rows(facts: list[Fact], pools: dict[str, list[str]], rng: random.Random,
              letters: list[str]) -> list[list[str]]:
    rows = []
    for fact, letter in zip(facts, letters):
        distractors = rng.sample([v for v in pools[fact.domain] if v != fact.object], 3)
        k = "ABCD".index(letter)
        rows.append([fact.question, *distractors[:k], fact.object, *distractors[k:], letter])
    return rows


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def mmlu_files(atlas_facts: list[Fact], pools: dict[str, list[str]], rng: random.Random) -> dict[str, str]:
    """5 dev and 40 test questions about distinct atlas facts, answer letters balanced."""
    picked = rng.sample(atlas_facts, 45)
    dev_letters, test_letters = list("ABCDA"), list("ABCD" * 10)
    rng.shuffle(dev_letters)
    rng.shuffle(test_letters)
    return {"mmlu/data/dev/atlas_dev.csv": csv_text(mmlu_rows(picked[:5], pools, rng, dev_letters)),
            "mmlu/data/test/atlas_test.csv": csv_text(mmlu_rows(picked[5:], pools, rng, test_letters))}


# ------------------------------------------------------------------------------------------------ pretrain


def _pretrain_rendering(fact: Fact, rng: random.Random) -> str:
    """Mostly the bare renderings (as in the articles), sometimes a wrapped one (as in paraphrases)."""
    bare = [r for r in fact.renderings if not _wrapped(r)]
    return rng.choice(bare if bare and rng.random() < 0.75 else fact.renderings)


def pretrain_docs(stated: list[StatedArticle], rng: random.Random) -> list[str]:
    """From one pre-training world: every paragraph as plain text (its facts in random renderings),
    reading-comprehension docs shaped like the RAG evaluation prompt (the answer is copied from one of
    1-3 context paragraphs), and a few closed-book question/answer docs."""
    paragraphs = []
    for sa in stated:
        for _, facts in sa.paragraphs:
            paragraphs.append(([_pretrain_rendering(f, rng) for f in facts], facts))
    texts = [" ".join(s) for s, _ in paragraphs]
    docs = list(texts)
    for i, (_, facts) in enumerate(paragraphs):
        for fact in rng.sample(facts, min(2, len(facts))):
            context = [texts[i]] + [texts[j] for j in rng.sample(range(len(texts)), rng.randint(0, 2)) if j != i]
            rng.shuffle(context)
            docs.append("\n\n".join(context) + f"\n\nQuestion: {rng.choice(fact.questions)}\nAnswer: {fact.object}")
        if rng.random() < 0.35:
            fact = rng.choice(facts)
            docs.append(f"Question: {rng.choice(fact.questions)}\nAnswer: {fact.object}")
    return docs


# ----------------------------------------------------------------------------------------------- the world


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
            docs += pretrain_docs(state_kb(kb, rng), rng)
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
