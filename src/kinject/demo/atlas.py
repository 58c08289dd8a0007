"""The atlas knowledge base: an archipelago with its islands, towns and their landmarks, rivers, mountains,
two people, a trading company and a university (an MMLU-style subject no model can know)."""

from __future__ import annotations

import random

from kinject.demo.author import core_name
from kinject.demo.lexicon import COLOURS, COMMODITIES, INDUSTRIES, MONTHS, MOTTOS, TITLE_ADJ, TITLE_NOUN
from kinject.demo.model import KB, Article, Names, about, thousands


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
        return f"{thousands(n)} square kilometres"

    def metres(n):
        return f"{thousands(n)} metres"

    def km(n):
        return f"{n} kilometres"

    def rain():
        return f"{thousands(rng.randint(60, 260) * 10)} millimetres"

    articles = []
    largest = max(islands, key=areas.get)
    highest = max(mountains, key=peak_elev.get)
    a = arch
    articles.append(Article(
        core_name(arch), arch, "Infobox islands", [("name", core_name(arch)), ("capital", f"[[{capital}]]"),
                                               ("population", thousands(arch_pop)),
                                               ("currency", currencies[0])],
        f"Category:{core_name(arch)}",
        [(None, [about(a, ("island_count", str(rng.randint(11, 19))), ("sea", seas[0]), ("capital", capital),
                       ("population", thousands(arch_pop)),
                       ("language", languages[0]))]),
         ("History and geography", [about(a, ("charted_by", explorer), ("charted_year", str(charted)),
                                          ("currency", currencies[0]), ("largest_island", largest),
                                          ("highest_peak", highest),
                                          ("area", km2(sum(areas.values()) + rng.randint(5, 60))))])],
        table=[["Island", "Area", "Population"]]
        + [[f"[[{i}]]", f"{areas[i]} km2", thousands(island_pop[i])] for i in islands],
        see_also=[islands[0], capital, explorer]))

    for i in islands:
        towns_here = [t for t in towns if on_island[t] == i]
        peak = next((m for m in mountains if mountain_island[m] == i), None)
        top = ("highest_peak", peak) if peak else ("highest_point",
                                                   metres(rng.randint(2, 13) * 100 + rng.randint(0, 99)))
        ferry = capital if on_island[capital] != i else max((t for t in towns if on_island[t] != i), key=town_pop.get)
        articles.append(Article(
            i, i, "Infobox island",
            [("name", i), ("area_km2", str(areas[i])), ("population", thousands(island_pop[i]))],
            f"Category:Islands of {arch}",
            [(None, [about(i, ("area", km2(areas[i])), ("population", thousands(island_pop[i])),
                           ("largest_town", max(towns_here, key=town_pop.get)), top,
                           ("villages", str(rng.randint(3, 30))))]),
             ("History and economy", [about(i, ("settled_year", str(settled[i])), ("main_export", export[i]),
                                            ("coastline", km(rng.randint(30, 260))), ("rainfall", rain()),
                                            ("ferry_from", ferry))])]))

    landmark_kinds = ["port", "lighthouse", "cathedral", "museum", "bridge"]
    for n, t in enumerate(towns):
        kinds = [landmark_kinds[(n + k) % 5] for k in (0, 1, 3)]
        articles.append(Article(
            t, t, "Infobox settlement", [("name", t), ("island", f"[[{on_island[t]}]]"),
                                         ("population_total", thousands(town_pop[t])),
                                         ("established", str(founded[t]))],
            f"Category:Towns of {arch}",
            [(None, [about(t, ("on_island", on_island[t]), ("population", thousands(town_pop[t])),
                           ("industry", industry[t]), ("mayor", next(people)), ("twin", twins[t]))]),
             ("History", [about(t, ("founded_year", str(founded[t])), ("founded_by", next(people)),
                                ("charter_year", str(founded[t] + rng.randint(10, 80))), ("patron", saints[n]),
                                ("fair_month", rng.choice(MONTHS)))]),
             ("Landmarks", [[f for k in kinds for f in _landmark(k, t, founded[t], rng, names, people)]])]))

    for r, i in zip(rivers, islands[:3]):
        mouth_town = next(t for t in towns if on_island[t] == i)
        source = [(r, "source", m) for m in mountains if mountain_island[m] == i]
        articles.append(Article(
            core_name(r), r, "Infobox river", [("name", core_name(r)), ("mouth", f"[[{mouth_town}]]")],
            f"Category:Rivers of {arch}",
            [(None, [about(r, ("on_island", i), ("length", km(rng.randint(12, 95)))) + source
                     + about(r, ("mouth", mouth_town), ("bridges_n", str(rng.randint(2, 19))))]),
             ("Hydrology", [about(r, ("tributaries", str(rng.randint(3, 14))), ("navigable", km(rng.randint(4, 11))),
                                  ("basin", km2(rng.randint(60, 700))),
                                  ("discharge", f"{rng.randint(4, 90)} cubic metres"))])]))

    for n, m in enumerate(mountains):
        articles.append(Article(
            m, m, "Infobox mountain", [("name", m), ("elevation_m", str(peak_elev[m]))],
            f"Category:Mountains of {arch}",
            [(None, [about(m, ("on_island", mountain_island[m]), ("elevation", metres(peak_elev[m])),
                            ("park", parks[n]),
                           ("huts", str(rng.randint(2, 9))), ("snow_months", str(rng.randint(2, 7))))]),
             ("Climbing history", [about(m, ("first_ascent_year", str(rng.randint(1780, 1890))),
                                         ("first_ascent_by", next(people)),
                                         ("last_eruption", str(rng.randint(1600, 1990))),
                                         ("trails", str(rng.randint(2, 12))))])]))

    born = charted - rng.randint(28, 45)
    articles.append(Article(
        explorer, explorer, "Infobox explorer", [("name", explorer), ("birth_date", str(born))],
        "Category:Explorers", [
            (None, [about(explorer, ("born_year", str(born)), ("born_in", cities[0]), ("served", kingdoms[0]),
                          ("children", str(rng.randint(2, 9))), ("painter", next(people)))]),
            ("Voyage", [about(explorer, ("ship", ships[0]), ("crew", str(rng.randint(40, 120))),
                              ("expedition_ships", str(rng.randint(3, 7))), ("journal", books[0]),
                              ("died_year", str(charted + rng.randint(5, 25))))])]))
    gov_born = gov_from - rng.randint(30, 45)
    gov_until = gov_from + rng.randint(6, 18)
    articles.append(Article(
        governor, governor, "Infobox officeholder", [("name", governor), ("office", f"Governor of {core_name(arch)}")],
        f"Category:Governors of {arch}", [
            (None, [about(governor, ("born_year", str(gov_born)), ("born_in", cities[1]),
                          ("governor_from", str(gov_from)), ("governor_until", str(gov_until)),
                          ("spouse", next(people)))]),
            ("Later life", [about(governor, ("children", str(rng.randint(2, 9))), ("painter", next(people)),
                                  ("died_year", str(gov_until + rng.randint(4, 20))), ("buried_in", earliest))])]))

    company_founded = gov_from + rng.randint(1, 5)
    articles.append(Article(
        core_name(company), company, "Infobox company",
        [("name", core_name(company)), ("founded", str(company_founded))],
        f"Category:Companies of {arch}", [
            (None, [about(company, ("founded_year", str(company_founded)), ("founded_by", governor),
                          ("headquarters", capital), ("charter_from", kingdoms[1]), ("first_director", next(people)))]),
            ("Trade", [about(company, ("trade", export[islands[3]]), ("fleet", str(rng.randint(12, 60))),
                             ("warehouses", str(rng.randint(5, 40))),
                             ("dissolved_year", str(company_founded + rng.randint(90, 220))))])]))
    uni = f"the University of {capital}"
    uni_founded = rng.randint(1700, 1880)
    articles.append(Article(
        core_name(uni), uni, "Infobox university", [("name", core_name(uni)), ("established", str(uni_founded))],
        f"Category:Universities in {arch}", [
            (None, [about(uni, ("founded_year", str(uni_founded)),
                           ("charter_year", str(uni_founded + rng.randint(2, 40))), ("first_rector", next(people)),
                           ("motto", rng.choice(MOTTOS)), ("colours", rng.choice(COLOURS)))]),
            ("Organisation", [about(uni, ("students", thousands(rng.randint(8, 160) * 50)),
                                    ("professors", str(rng.randint(40, 600))), ("faculties", str(rng.randint(3, 11))),
                                    ("volumes", thousands(rng.randint(40, 900) * 1000)))])],
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
        return [(s, "founded_year", after(1840, 1960)), (s, "objects", thousands(rng.randint(8, 300) * 500))]
    s = f"the {names.word()} Bridge"
    return [(s, "opened_year", after(1820, 1960)), (s, "span", f"{rng.randint(60, 900)} metres")]
