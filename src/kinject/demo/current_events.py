"""The current-events knowledge base: news of 2031 (elections, prizes, launches, treaties, cup finals,
companies, films, infrastructure), standing in for the paper's post-cut-off events."""

from __future__ import annotations

import random

from kinject.demo.author import core_name
from kinject.demo.lexicon import DESTINATIONS, PARTY_WORDS, PRODUCTS, RESEARCH, SCORES, TITLE_ADJ, TITLE_NOUN, TOPICS
from kinject.demo.model import KB, Article, Names, date_after, random_date, thousands


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
        held = random_date(rng, range(1, 10))
        winner, runner, party = next(people), next(people), rng.choice(parties)
        add(s, "Infobox election", "Category:2031 elections", [
            (None, [[(s, "held_on", held), (s, "won_by", winner), (s, "winner_party", party),
                     (s, "turnout", f"{rng.randint(450, 860) / 10:.1f} percent"),
                     (s, "candidates", str(rng.randint(3, 11)))]]),
            ("Results", [[(s, "winner_share", f"{rng.randint(380, 660) / 10:.1f} percent"), (s, "runner_up", runner),
                          (s, "votes_cast", thousands(rng.randint(90, 9000) * 1000 + rng.randint(0, 999))),
                          (s, "sworn_in", date_after(held, rng, 25, 60)), (s, "observers", rng.choice(monitors))]])],
            table=[["Candidate", "Party", "Result"], [f"[[{winner}]]", core_name(party), "Elected"],
                   [runner, core_name(rng.choice([p for p in parties if p != party])), "Defeated"]] if n == 0 else None)

    for n, (field_name, work) in enumerate([("Literature", "for_work"), ("Music", "for_work"),
                                            ("Physics", "for_research"), ("Medicine", "for_research")]):
        s = f"the 2031 {names.word()} Prize for {field_name}"
        add(s, "Infobox award", "Category:2031 awards", [
            (None, [[(s, "announced_on", random_date(rng, range(2, 11))), (s, "awarded_to", next(people)),
                     (s, work, titles[n] if work == "for_work" else rng.choice(RESEARCH)),
                     (s, "winner_country", rng.choice(countries))]]),
            ("Ceremony", [[(s, "ceremony_city", rng.choice(cities)),
                           (s, "prize_money", f"{thousands(rng.randint(10, 120) * 10000)} dollars"),
                           (s, "jury_chair", next(people)), (s, "nominees", str(rng.randint(4, 16)))]])])

    for k in ["probe", "space telescope", "lunar lander", "weather satellite"]:
        s = f"the {names.word()}-{rng.randint(1, 6)} {k}"
        add(s, "Infobox spaceflight", "Category:Spacecraft launched in 2031", [
            (None, [[(s, "launched_on", random_date(rng)), (s, "launched_by", rng.choice(agencies)),
                     (s, "launch_site", rng.choice(spaceports)),
                     (s, "destination", "the Moon" if k == "lunar lander" else rng.choice(DESTINATIONS))]]),
            ("Mission", [[(s, "rocket", rng.choice(rockets)),
                          (s, "mass", f"{thousands(rng.randint(300, 9000))} kilograms"),
                          (s, "cost", f"{rng.randint(3, 45) / 10:.1f} billion dollars"),
                          (s, "mission_director", next(people))]])])

    for k in ["Accord", "Convention", "Protocol"]:
        s = f"the {names.word()} {k}"
        signed = random_date(rng, range(0, 8))
        add(s, "Infobox treaty", "Category:Treaties of 2031", [
            (None, [[(s, "signed_on", signed), (s, "signed_in", rng.choice(cities)),
                     (s, "signatories", str(rng.randint(3, 40))), (s, "topic", rng.choice(TOPICS)),
                     (s, "depositary", rng.choice(countries))]]),
            ("Entry into force", [[(s, "negotiator", next(people)),
                                                   (s, "in_force", date_after(signed, rng, 30, 120)),
                                                   (s, "duration", str(rng.randint(5, 50))),
                                                   (s, "secretariat", rng.choice(cities))]])])

    for k in ["Cup", "League", "Shield", "Trophy"]:
        s = f"the 2031 {names.word()} {k} final"
        winner, loser = rng.sample(teams, 2)
        add(s, "Infobox football match", "Category:2031 in sport", [
            (None, [[(s, "held_on", random_date(rng)), (s, "winner_team", winner), (s, "loser_team", loser),
                     (s, "score", rng.choice(SCORES))]]),
            ("Match", [[(s, "venue", rng.choice(stadiums)),
                        (s, "attendance", thousands(rng.randint(8000, 90000))),
                        (s, "player_of_match", next(people)), (s, "winning_coach", next(people))]])])

    for n, c in enumerate(companies[:4]):
        add(c, "Infobox company", "Category:Companies", [
            (None, [[(c, "hq_city", rng.choice(cities)), (c, "founded_year", str(rng.randint(1975, 2020))),
                     (c, "founded_by", next(people)), (c, "employees", thousands(rng.randint(300, 90000))),
                     (c, "revenue", f"{rng.randint(4, 180) / 10:.1f} billion dollars")]]),
            ("2031", [[(c, "ceo", next(people)), (c, "acquired", companies[8 + n]), (c, "product", products[n]),
                       (c, "debut", random_date(rng))]])])

    for _ in range(3):
        s = f"the film {rng.choice(TITLE_ADJ)} {names.word()}"
        add(s, "Infobox film", "Category:2031 films", [
            (None, [[(s, "director", next(people)), (s, "lead_actor", next(people)),
                     (s, "studio", rng.choice(companies[4:6])),
                     (s, "runtime", f"{rng.randint(84, 171)} minutes"), (s, "composer", next(people))]]),
            ("Release", [[(s, "premiere_festival", rng.choice(festivals)),
                          (s, "premiere_date", random_date(rng, range(0, 9))),
                          (s, "budget", f"{rng.randint(2, 180)} million dollars"),
                          (s, "box_office", f"{rng.randint(3, 900)} million dollars")]])])

    works = [f"the {names.word()} Bridge", f"the {names.word()} Tunnel",
             f"Line {rng.randint(2, 9)} of the {cities[1]} Metro"]
    for s in works:
        add(s, "Infobox infrastructure", "Category:Infrastructure completed in 2031", [
            (None, [[(s, "opened_on", random_date(rng)),
                     (s, "route_length", f"{rng.randint(8, 300) / 10:.1f} kilometres"),
                     (s, "cost", f"{rng.randint(3, 45) / 10:.1f} billion dollars"), (s, "architect", next(people))]]),
            ("Construction and use", [[(s, "builder", rng.choice(companies[6:8])),
                                       (s, "build_years", str(rng.randint(2, 12))),
                                       (s, "terminus", rng.choice(cities[2:])),
                                       (s, "daily_users", thousands(rng.randint(20, 900) * 100))]])],
            see_also=[companies[6]] if s.endswith("Tunnel") else [])

    pools = {"person": persons, "party": parties, "monitor": monitors, "city": cities, "country": countries,
             "agency": agencies, "spaceport": spaceports, "destination": DESTINATIONS, "rocket": rockets,
             "topic": TOPICS, "team": teams, "stadium": stadiums, "score": SCORES, "company": companies,
             "title": titles, "research": RESEARCH, "festival": festivals, "product": products,
             "year": [str(y) for y in range(1975, 2021, 3)]}
    return KB("current_events", articles, pools)
