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
from kinject.io import write_text

SEED = 2031
N_PARAPHRASES = 12
N_PRETRAIN_WORLDS = 5
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

# ---------------------------------------------------------------------------------------------- relations


@dataclass(frozen=True)
class Relation:
    """How a fact of one relation is stated: clause templates ({s}, {o}; written lower-case where they
    begin with an ordinary word, the sentence start is capitalised later) and question templates."""

    domain: str
    clauses: tuple[str, ...]
    questions: tuple[str, ...]


def _rel(domain: str, clauses: str, questions: str) -> Relation:
    return Relation(domain, tuple(c.strip() for c in clauses.split("|")),
                    tuple(q.strip() for q in questions.split("|")))


def _year_relation(p: str, noun: str) -> Relation:
    return _rel("year", f"{{s}} was {p} in {{o}}. | in {{o}}, {{s}} was {p}. "
                        f"| the {noun} of {{s}} took place in {{o}}. | {{s}} was {p} in the year {{o}}. "
                        f"| it was in {{o}} that {{s}} was {p}. | the year {{o}} saw {{s}} {p}.",
                f"In which year was {{s}} {p}? | When was {{s}} {p}? | What year is given for the {noun} of {{s}}?")


def _date_relation(p: str, noun: str) -> Relation:
    return _rel("date", f"{{s}} was {p} on {{o}}. | on {{o}}, {{s}} was {p}. "
                        f"| the {noun} of {{s}} took place on {{o}}. | it was on {{o}} that {{s}} was {p}. "
                        f"| {{o}} was the date on which {{s}} was {p}. | {{s}} was officially {p} on {{o}}.",
                f"On which date was {{s}} {p}? | When was {{s}} {p}? | What was the date of the {noun} of {{s}}?")


def _length(domain: str, verb: str) -> Relation:
    return _rel(domain, f"{{s}} is {{o}} long. | the length of {{s}} is {{o}}. | {{s}} {verb} {{o}}. "
                        f"| {{s}} has a total length of {{o}}. | {{o}} is the total length of {{s}}.",
                "How long is {s}? | What is the length of {s}? | What total length does {s} have?")


def _headquarters(domain: str) -> Relation:
    return _rel(domain, "{s} has its headquarters in {o}. | the headquarters of {s} are in {o}. "
                        "| {s} is headquartered in {o}. | {o} is home to the headquarters of {s}. "
                        "| {s} is based in {o}.",
                "Where does {s} have its headquarters? | Where is {s} headquartered? | Where is {s} based?")


RELATIONS: dict[str, Relation] = {
    # ---- atlas
    "island_count": _rel("island_count",
        "{s} consists of {o} islands. | {s} is made up of {o} islands. | there are {o} islands in {s}. "
        "| {o} islands make up {s}. | the number of islands in {s} is {o}. | {s} comprises a total of {o} islands.",
        "How many islands make up {s}? | How many islands does {s} consist of? "
        "| What is the number of islands in {s}?"),
    "capital": _rel("town",
        "the capital of {s} is {o}. | {o} is the capital of {s}. | {s} is governed from its capital, {o}. "
        "| {s} has {o} as its capital. | the seat of government of {s} is the town of {o}. "
        "| {o} serves as the capital of {s}.",
        "What is the capital of {s}? | Which town is the capital of {s}? | Which town serves as the capital of {s}?"),
    "charted_by": _rel("person",
        "{s} was first charted by {o}. | {o} was the first to chart {s}. | the first charts of {s} were drawn by {o}. "
        "| it was {o} who first charted {s}. | {s} was first mapped by the explorer {o}. "
        "| the explorer {o} first charted {s}.",
        "Who first charted {s}? | Which explorer first charted {s}? | By whom was {s} first charted?"),
    "charted_year": _year_relation("first charted", "first charting"),
    "largest_island": _rel("island",
        "the largest island of {s} is {o}. | {o} is the largest island in {s}. "
        "| of all the islands of {s}, {o} is the largest. "
        "| {s} has {o} as its largest island. | {o} is the biggest island of {s}.",
        "Which is the largest island of {s}? | What is the largest island in {s}? "
        "| Which island is the biggest in {s}?"),
    "highest_peak": _rel("mountain",
        "the highest peak of {s} is {o}. | {o} is the highest peak in {s}. | no summit in {s} rises higher than {o}. "
        "| {s} reaches its highest point at {o}. | {o} is the tallest mountain of {s}.",
        "What is the highest peak of {s}? | Which mountain is the highest in {s}? "
        "| Which is the tallest mountain of {s}?"),
    "sea": _rel("sea",
        "{s} lies in {o}. | {s} is situated in {o}. | {o} surrounds {s}. | the waters around {s} belong to {o}. "
        "| {s} is an island group in {o}. | {s} is located in {o}.",
        "In which sea does {s} lie? | Which sea surrounds {s}? | In which sea is {s} located?"),
    "currency": _rel("currency",
        "the official currency of {s} is {o}. | {s} uses {o} as its official currency. "
        "| {o} is the official currency of {s}. "
        "| payments in {s} are made in {o}. | the currency used in {s} is {o}.",
        "What is the official currency of {s}? | Which currency is used in {s}? "
        "| Which currency is the official currency of {s}?"),
    "language": _rel("language",
        "the official language of {s} is {o}. | {o} is the official language of {s}. "
        "| {s} has {o} as its official language. "
        "| the language of government in {s} is {o}. | {o} serves as the official language of {s}.",
        "What is the official language of {s}? | Which language is the official language of {s}? "
        "| Which language serves as the official language of {s}?"),
    "population": _rel("population",
        "{s} has a population of {o}. | the population of {s} is {o}. | {o} people live in {s}. "
        "| {s} is home to {o} people. "
        "| the last census counted {o} inhabitants in {s}. | {s} has {o} inhabitants.",
        "What is the population of {s}? | How many people live in {s}? | How many inhabitants does {s} have?"),
    "area": _rel("area",
        "{s} covers an area of {o}. | the area of {s} is {o}. | {s} has a total area of {o}. | {s} extends over {o}. "
        "| {o} is the total area of {s}. | {s} measures {o} in area.",
        "What is the area of {s}? | How large is {s} in area? | What total area does {s} cover?"),
    "largest_town": _rel("town",
        "the largest town on {s} is {o}. | {o} is the largest town on {s}. "
        "| of all the towns on {s}, {o} is the largest. "
        "| {s} has {o} as its largest town. | {o} is the biggest town on {s}.",
        "What is the largest town on {s}? | Which town is the largest on {s}? | Which is the biggest town on {s}?"),
    "highest_point": _rel("elevation",
        "the highest point of {s} rises to {o}. | {s} reaches a maximum elevation of {o}. "
        "| the highest ground on {s} stands at {o}. | {s} rises to {o} at its highest point. "
        "| {o} is the elevation of the highest point of {s}.",
        "How high is the highest point of {s}? | What is the maximum elevation of {s}? "
        "| To what elevation does the highest point of {s} rise?"),
    "settled_year": _year_relation("first settled", "first settlement"),
    "main_export": _rel("commodity",
        "the main export of {s} is {o}. | {s} mainly exports {o}. | {o} is the main export of {s}. "
        "| the chief export of {s} is {o}. | most exports from {s} consist of {o}.",
        "What is the main export of {s}? | Which good is the main export of {s}? | What does {s} mainly export?"),
    "coastline": _rel("coastline",
        "the coastline of {s} is {o} long. | {s} has a coastline of {o}. | {s} has {o} of coastline. "
        "| the coast of {s} stretches for {o}. | {o} of coastline surround {s}.",
        "How long is the coastline of {s}? | What is the length of the coastline of {s}? "
        "| How many kilometres of coastline does {s} have?"),
    "on_island": _rel("island",
        "{s} is located on {o}. | {s} lies on {o}. | {s} can be found on {o}. "
        "| {o} is the island on which {s} is located. "
        "| {s} is found on {o}.",
        "On which island is {s} located? | Which island is {s} on? | On which island does {s} lie?"),
    "founded_year": _year_relation("founded", "founding"),
    "founded_by": _rel("person",
        "{s} was founded by {o}. | {o} founded {s}. | it was {o} who founded {s}. | the founder of {s} was {o}. "
        "| {s} owes its founding to {o}. | {o} was the founder of {s}.",
        "Who founded {s}? | By whom was {s} founded? | Who was the founder of {s}?"),
    "industry": _rel("industry",
        "the leading industry of {s} is {o}. | {o} is the leading industry in {s}. "
        "| most workers in {s} are employed in {o}. "
        "| the economy of {s} is dominated by {o}. | {s} depends mainly on {o}.",
        "What is the leading industry of {s}? | Which industry dominates the economy of {s}? "
        "| Which industry employs most workers in {s}?"),
    "charter_year": _year_relation("granted its charter", "granting of the charter"),
    "mayor": _rel("person",
        "the mayor of {s} is {o}. | {o} is the mayor of {s}. | {s} is led by its mayor, {o}. "
        "| {o} serves as mayor of {s}. "
        "| {s} has {o} as its mayor. | the current mayor of {s} is {o}.",
        "Who is the mayor of {s}? | Who serves as mayor of {s}? | Which person is the mayor of {s}?"),
    "opened_year": _year_relation("opened", "opening"),
    "berths": _rel("berths",
        "{s} has {o} berths. | there are {o} berths in {s}. | {s} offers {o} berths for ships. "
        "| {o} berths are available at {s}. "
        "| the number of berths at {s} is {o}.",
        "How many berths does {s} have? | How many berths are there in {s}? | What is the number of berths at {s}?"),
    "built_year": _year_relation("built", "construction"),
    "height": _rel("height",
        "{s} is {o} tall. | {s} stands {o} tall. | the height of {s} is {o}. | {s} rises to a height of {o}. "
        "| {s} has a height of {o}.",
        "How tall is {s}? | What is the height of {s}? | To what height does {s} rise?"),
    "consecrated_year": _year_relation("consecrated", "consecration"),
    "architect": _rel("person",
        "{s} was designed by {o}. | {o} designed {s}. | it was {o} who designed {s}. | the architect of {s} was {o}. "
        "| {s} was designed by the architect {o}. | {o} was the architect of {s}.",
        "Who designed {s}? | Who was the architect of {s}? | By whom was {s} designed?"),
    "objects": _rel("objects",
        "{s} holds {o} objects. | the collection of {s} contains {o} objects. | {o} objects are held by {s}. "
        "| {s} has a collection of {o} objects. | there are {o} objects in the collection of {s}.",
        "How many objects does {s} hold? | How many objects are in the collection of {s}? "
        "| What is the size of the collection of {s}?"),
    "span": _length("span", "spans"),
    "length": _length("river_length", "runs for"),
    "mouth": _rel("town",
        "{s} flows into the sea at {o}. | {s} reaches the sea at {o}. | the mouth of {s} is at {o}. "
        "| {o} lies at the mouth of {s}. | {s} ends at the town of {o}.",
        "At which town does {s} flow into the sea? | Which town lies at the mouth of {s}? "
        "| Where does {s} reach the sea?"),
    "source": _rel("mountain",
        "{s} rises on the slopes of {o}. | the source of {s} is on {o}. | {s} has its source on {o}. "
        "| {o} is where {s} has its source. | {s} begins on the slopes of {o}.",
        "On which mountain does {s} rise? | Where is the source of {s}? | On which mountain is the source of {s}?"),
    "tributaries": _rel("tributaries",
        "{s} has {o} tributaries. | {o} tributaries feed {s}. | {s} is fed by {o} tributaries. "
        "| the number of tributaries of {s} is {o}. | {s} receives the water of {o} tributaries.",
        "How many tributaries does {s} have? | By how many tributaries is {s} fed? "
        "| What is the number of tributaries of {s}?"),
    "navigable": _rel("navigable",
        "{s} is navigable for {o}. | boats can navigate {s} for {o}. | the navigable stretch of {s} is {o} long. "
        "| {s} can be navigated for {o}. | the first {o} of {s} are navigable.",
        "For how far is {s} navigable? | How long is the navigable stretch of {s}? "
        "| For what distance can {s} be navigated?"),
    "basin": _rel("basin",
        "{s} drains a basin of {o}. | the drainage basin of {s} covers {o}. | {s} has a drainage basin of {o}. "
        "| the basin of {s} extends over {o}. | {o} is the size of the drainage basin of {s}.",
        "How large is the drainage basin of {s}? | What area does the drainage basin of {s} cover? "
        "| What is the size of the drainage basin of {s}?"),
    "elevation": _rel("elevation",
        "{s} has an elevation of {o}. | {s} rises to {o}. | the summit of {s} stands at {o}. "
        "| the elevation of {s} is {o}. "
        "| {s} reaches a height of {o}.",
        "What is the elevation of {s}? | How high is {s}? | At what height does the summit of {s} stand?"),
    "first_ascent_year": _year_relation("first climbed", "first ascent"),
    "first_ascent_by": _rel("person",
        "{s} was first climbed by {o}. | {o} made the first ascent of {s}. | it was {o} who first climbed {s}. "
        "| the first ascent of {s} was made by {o}. | {o} was the first person to climb {s}.",
        "Who first climbed {s}? | Who made the first ascent of {s}? | By whom was {s} first climbed?"),
    "last_eruption": _rel("year",
        "{s} last erupted in {o}. | the last eruption of {s} took place in {o}. "
        "| in {o}, {s} erupted for the last time. "
        "| {s} has not erupted since {o}. | the most recent eruption of {s} occurred in {o}.",
        "In which year did {s} last erupt? | When did {s} last erupt? | In which year was the last eruption of {s}?"),
    "park": _rel("park",
        "the slopes of {s} are protected by {o}. | {s} lies within {o}. | {s} is part of {o}. "
        "| {o} protects the slopes of {s}. "
        "| {s} is protected as part of {o}.",
        "Which national park protects {s}? | Within which national park does {s} lie? "
        "| Which national park is {s} part of?"),
    "born_year": _year_relation("born", "birth"),
    "died_year": _rel("year",
        "{s} died in {o}. | in {o}, {s} died. | the death of {s} took place in {o}. | it was in {o} that {s} died. "
        "| {s} died in the year {o}. | the year {o} saw the death of {s}.",
        "In which year did {s} die? | When did {s} die? | What is the year of death of {s}?"),
    "born_in": _rel("city",
        "{s} was born in the city of {o}. | {o} is the birthplace of {s}. | the birthplace of {s} was {o}. "
        "| {s} was a native of {o}. | the city of {o} was the birthplace of {s}.",
        "Where was {s} born? | In which city was {s} born? | What is the birthplace of {s}?"),
    "ship": _rel("ship",
        "{s} commanded the ship {o}. | the ship {o} was commanded by {s}. | {o} was the ship commanded by {s}. "
        "| {s} was the captain of the ship {o}. | {s} served as captain of the ship {o}.",
        "Which ship did {s} command? | Of which ship was {s} the captain? "
        "| What was the name of the ship commanded by {s}?"),
    "crew": _rel("crew",
        "{s} sailed with a crew of {o} sailors. | the crew of {s} numbered {o} sailors. "
        "| {o} sailors served in the crew of {s}. "
        "| {s} led a crew of {o} sailors. | {s} commanded a crew of {o} sailors.",
        "How many sailors were in the crew of {s}? | How large was the crew of {s}? "
        "| With a crew of how many sailors did {s} sail?"),
    "served": _rel("kingdom",
        "{s} served in the navy of {o}. | {s} was an officer in the navy of {o}. "
        "| the navy of {o} counted {s} among its officers. "
        "| {s} sailed in the service of {o}. | {s} held a commission in the navy of {o}.",
        "In whose navy did {s} serve? | Which kingdom did {s} serve at sea? "
        "| In the navy of which kingdom did {s} serve?"),
    "governor_from": _rel("year",
        "{s} was appointed governor in {o}. | in {o}, {s} was appointed governor. | {s} became governor in {o}. "
        "| the appointment of {s} as governor took place in {o}. | it was in {o} that {s} was appointed governor.",
        "In which year was {s} appointed governor? | When did {s} become governor? "
        "| In which year did {s} become governor?"),
    "buried_in": _rel("town",
        "{s} is buried in {o}. | the grave of {s} is in {o}. | {s} was buried in {o}. "
        "| {o} is the burial place of {s}. "
        "| the burial place of {s} is {o}.",
        "Where is {s} buried? | In which town is {s} buried? | Which town is the burial place of {s}?"),
    "spouse": _rel("person",
        "{s} was married to {o}. | {o} was the spouse of {s}. | the spouse of {s} was {o}. | {s} married {o}. "
        "| {o} was married to {s}.",
        "To whom was {s} married? | Who was the spouse of {s}? | Whom did {s} marry?"),
    "headquarters": _headquarters("town"),
    "trade": _rel("commodity",
        "{s} traded mainly in {o}. | the main trade good of {s} was {o}. | {s} dealt chiefly in {o}. "
        "| {o} was the chief trade good of {s}. | most of the trade of {s} was in {o}.",
        "In which good did {s} mainly trade? | What was the main trade good of {s}? | What did {s} deal chiefly in?"),
    "fleet": _rel("fleet",
        "{s} owned a fleet of {o} ships. | the fleet of {s} numbered {o} ships. | {s} operated {o} ships. "
        "| {o} ships sailed for {s}. | at its height, {s} owned {o} ships.",
        "How many ships did {s} own? | How large was the fleet of {s}? | How many ships did the fleet of {s} number?"),
    "dissolved_year": _year_relation("dissolved", "dissolution"),
    "first_rector": _rel("person",
        "the first rector of {s} was {o}. | {o} was the first rector of {s}. | {s} was first led by the rector {o}. "
        "| {o} served as the first rector of {s}. | {s} had {o} as its first rector.",
        "Who was the first rector of {s}? | Who served as the first rector of {s}? | Which rector first led {s}?"),
    "students": _rel("students",
        "{s} has {o} students. | {o} students are enrolled at {s}. | {s} enrols {o} students. "
        "| the student body of {s} numbers {o}. | there are {o} students at {s}.",
        "How many students does {s} have? | How many students are enrolled at {s}? "
        "| How large is the student body of {s}?"),
    "volumes": _rel("volumes",
        "the library of {s} holds {o} volumes. | {s} has a library of {o} volumes. "
        "| {o} volumes are kept in the library of {s}. "
        "| the library of {s} contains {o} volumes. | there are {o} volumes in the library of {s}.",
        "How many volumes does the library of {s} hold? | How large is the library of {s}? "
        "| How many volumes are kept in the library of {s}?"),
    "faculties": _rel("faculties",
        "{s} has {o} faculties. | {s} is divided into {o} faculties. | {o} faculties make up {s}. "
        "| there are {o} faculties at {s}. | {s} is organised into {o} faculties.",
        "How many faculties does {s} have? | Into how many faculties is {s} divided? "
        "| How many faculties make up {s}?"),
    "villages": _rel("villages",
        "{s} has {o} villages. | there are {o} villages on {s}. | {o} villages lie on {s}. "
        "| the number of villages on {s} is {o}. "
        "| {s} is dotted with {o} villages.",
        "How many villages does {s} have? | How many villages are there on {s}? "
        "| What is the number of villages on {s}?"),
    "rainfall": _rel("rainfall",
        "{s} receives {o} of rain a year. | the annual rainfall of {s} is {o}. | each year, {o} of rain falls on {s}. "
        "| {s} has an annual rainfall of {o}. | average yearly rainfall on {s} reaches {o}.",
        "How much rain does {s} receive a year? | What is the annual rainfall of {s}? "
        "| How much rain falls on {s} each year?"),
    "ferry_from": _rel("town",
        "ferries to {s} depart from {o}. | the main ferry to {s} leaves from {o}. "
        "| {o} is the departure port for ferries to {s}. "
        "| {s} is served by ferries from {o}. | {s} is reached by ferry from {o}.",
        "From which town do ferries to {s} depart? | Which town is the departure port for ferries to {s}? "
        "| From where does the main ferry to {s} leave?"),
    "twin": _rel("city",
        "{s} is twinned with {o}. | {s} has a twinning agreement with {o}. | {o} is the twin town of {s}. "
        "| the twin town of {s} is {o}. | {s} and {o} are twin towns.",
        "With which city is {s} twinned? | What is the twin town of {s}? "
        "| Which city has a twinning agreement with {s}?"),
    "fair_month": _rel("month",
        "the annual fair of {s} is held in {o}. | {s} holds its annual fair in {o}. "
        "| every {o}, {s} holds its annual fair. "
        "| in {o}, the annual fair of {s} takes place. | the yearly fair of {s} takes place each {o}.",
        "In which month is the annual fair of {s} held? | When does {s} hold its annual fair? "
        "| In which month does the annual fair of {s} take place?"),
    "patron": _rel("saint",
        "the patron saint of {s} is {o}. | {o} is the patron saint of {s}. | {s} honours {o} as its patron saint. "
        "| {s} has {o} as its patron saint. | the people of {s} honour {o} as their patron saint.",
        "Who is the patron saint of {s}? | Which saint is the patron saint of {s}? "
        "| Whom does {s} honour as its patron saint?"),
    "bridges_n": _rel("bridges",
        "{s} is crossed by {o} bridges. | {o} bridges cross {s}. | there are {o} bridges over {s}. "
        "| the number of bridges over {s} is {o}. | {s} is spanned by {o} bridges.",
        "How many bridges cross {s}? | By how many bridges is {s} crossed? | How many bridges are there over {s}?"),
    "discharge": _rel("discharge",
        "{s} carries {o} of water per second. | the average discharge of {s} is {o} per second. "
        "| {o} of water flow down {s} every second. | {s} discharges {o} of water per second. "
        "| on average, {s} carries {o} of water per second.",
        "How much water does {s} carry per second? | What is the average discharge of {s} per second? "
        "| How much water flows down {s} every second?"),
    "huts": _rel("huts",
        "{s} has {o} mountain huts. | there are {o} mountain huts on {s}. | {o} mountain huts stand on {s}. "
        "| climbers on {s} can use {o} mountain huts. | the number of mountain huts on {s} is {o}.",
        "How many mountain huts does {s} have? | How many mountain huts are there on {s}? "
        "| How many mountain huts stand on {s}?"),
    "trails": _rel("trails",
        "{o} marked trails lead to the summit of {s}. | the summit of {s} can be reached by {o} marked trails. "
        "| {s} has {o} marked trails to its summit. | there are {o} marked trails to the summit of {s}. "
        "| climbers can reach the summit of {s} by {o} marked trails.",
        "How many marked trails lead to the summit of {s}? "
        "| By how many marked trails can the summit of {s} be reached? "
        "| How many marked trails does {s} have to its summit?"),
    "snow_months": _rel("snow_months",
        "the summit of {s} is covered in snow for {o} months a year. "
        "| snow covers the summit of {s} for {o} months each year. "
        "| for {o} months a year, snow lies on the summit of {s}. "
        "| {s} keeps snow on its summit for {o} months a year. "
        "| the snow season on the summit of {s} lasts {o} months.",
        "For how many months a year is the summit of {s} covered in snow? "
        "| How long does snow cover the summit of {s} each year? "
        "| How many months does the snow season on the summit of {s} last?"),
    "children": _rel("children",
        "{s} had {o} children. | {s} was the parent of {o} children. | {o} children were born to {s}. "
        "| the family of {s} included {o} children. | in total, {s} had {o} children.",
        "How many children did {s} have? | Of how many children was {s} the parent? "
        "| How many children were born to {s}?"),
    "journal": _rel("book",
        "{s} wrote the journal {o}. | the journal {o} was written by {s}. | {o} is the journal written by {s}. "
        "| {s} was the author of the journal {o}. | {s} recorded the voyage in the journal {o}.",
        "Which journal did {s} write? | Of which journal was {s} the author? "
        "| What is the title of the journal written by {s}?"),
    "painter": _rel("person",
        "{s} was painted by the portraitist {o}. | the portraitist {o} painted {s}. "
        "| the best-known portrait of {s} is by {o}. "
        "| {o} painted the best-known portrait of {s}. | a portrait of {s} was painted by {o}.",
        "Which portraitist painted {s}? | Who painted the best-known portrait of {s}? | By whom was {s} painted?"),
    "expedition_ships": _rel("expedition_ships",
        "{s} led an expedition of {o} ships. | the expedition of {s} consisted of {o} ships. "
        "| {o} ships sailed in the expedition of {s}. | {s} commanded an expedition of {o} ships. "
        "| the fleet led by {s} numbered {o} ships.",
        "How many ships were in the expedition of {s}? | Of how many ships did the expedition of {s} consist? "
        "| How many ships did {s} lead?"),
    "governor_until": _rel("year",
        "{s} left office in {o}. | in {o}, {s} left office. | the term of {s} as governor ended in {o}. "
        "| {s} stepped down as governor in {o}. | it was in {o} that {s} left office.",
        "In which year did {s} leave office? | When did the term of {s} as governor end? "
        "| In which year did {s} step down as governor?"),
    "charter_from": _rel("kingdom",
        "{s} received its royal charter from {o}. | {o} granted a royal charter to {s}. "
        "| the royal charter of {s} was granted by {o}. | {s} was chartered by {o}. "
        "| {s} held a royal charter from {o}.",
        "From which kingdom did {s} receive its royal charter? | Which kingdom granted a royal charter to {s}? "
        "| By which kingdom was {s} chartered?"),
    "first_director": _rel("person",
        "the first director of {s} was {o}. | {o} was the first director of {s}. "
        "| {o} served as the first director of {s}. "
        "| {s} was first run by the director {o}. | {s} had {o} as its first director.",
        "Who was the first director of {s}? | Who served as the first director of {s}? "
        "| Which director first ran {s}?"),
    "warehouses": _rel("warehouses",
        "{s} owned {o} warehouses. | the warehouses of {s} numbered {o}. | {s} ran {o} warehouses. "
        "| {o} warehouses belonged to {s}. | at its height, {s} had {o} warehouses.",
        "How many warehouses did {s} own? | How many warehouses did {s} run? | How many warehouses belonged to {s}?"),
    "motto": _rel("motto",
        "the motto of {s} is {o}. | {s} has the motto {o}. | {o} is the motto of {s}. | {s} uses the motto {o}. "
        "| the official motto of {s} is {o}.",
        "What is the motto of {s}? | Which motto does {s} use? | What is the official motto of {s}?"),
    "colours": _rel("colours",
        "the official colours of {s} are {o}. | {s} uses {o} as its official colours. | the colours of {s} are {o}. "
        "| {s} has {o} as its colours. | {s} is represented by the colours {o}.",
        "What are the official colours of {s}? | Which colours does {s} use? | By which colours is {s} represented?"),
    "professors": _rel("professors",
        "{s} employs {o} professors. | {o} professors teach at {s}. "
        "| the teaching staff of {s} includes {o} professors. "
        "| there are {o} professors at {s}. | {s} has {o} professors.",
        "How many professors does {s} employ? | How many professors teach at {s}? "
        "| How many professors are there at {s}?"),
    # ---- current events
    "held_on": _rel("date",
        "{s} was held on {o}. | on {o}, {s} was held. | {s} took place on {o}. | it was on {o} that {s} was held. "
        "| {o} was the date of {s}. | {s} was staged on {o}.",
        "On which date was {s} held? | When was {s} held? | What was the date of {s}?"),
    "won_by": _rel("person",
        "{s} was won by {o}. | {o} won {s}. | the winner of {s} was {o}. | {o} emerged as the winner of {s}. "
        "| it was {o} who won {s}. | victory in {s} went to {o}.",
        "Who won {s}? | Who was the winner of {s}? | Which candidate won {s}?"),
    "winner_party": _rel("party",
        "the winner of {s} represented {o}. | {s} was won by the candidate of {o}. | the candidate of {o} won {s}. "
        "| the winning candidate in {s} stood for {o}. | {o} won {s} with its candidate.",
        "Which party did the winner of {s} represent? | The candidate of which party won {s}? "
        "| For which party did the winning candidate in {s} stand?"),
    "turnout": _rel("percent",
        "turnout in {s} was {o}. | {s} had a turnout of {o}. | {o} of eligible voters took part in {s}. "
        "| the turnout recorded in {s} was {o}. | voter turnout in {s} reached {o}.",
        "What was the turnout in {s}? | What percentage of eligible voters took part in {s}? "
        "| What voter turnout was recorded in {s}?"),
    "winner_share": _rel("percent",
        "the winner of {s} received {o} of the vote. | {o} of the vote went to the winner of {s}. "
        "| the winning candidate in {s} took {o} of the vote. | the winner of {s} won with {o} of the vote. "
        "| in {s}, the winner received {o} of the vote.",
        "What share of the vote did the winner of {s} receive? "
        "| With what share of the vote did the winner of {s} win? "
        "| What percentage of the vote went to the winner of {s}?"),
    "runner_up": _rel("person",
        "the runner-up in {s} was {o}. | {o} finished second in {s}. | {o} was the runner-up in {s}. "
        "| second place in {s} went to {o}. | in {s}, {o} came second.",
        "Who was the runner-up in {s}? | Who finished second in {s}? | Which candidate came second in {s}?"),
    "votes_cast": _rel("votes",
        "{o} votes were cast in {s}. | a total of {o} votes were cast in {s}. | {s} saw {o} votes cast. "
        "| the number of votes cast in {s} was {o}. | voters cast {o} ballots in {s}.",
        "How many votes were cast in {s}? | What was the total number of votes cast in {s}? "
        "| How many ballots did voters cast in {s}?"),
    "sworn_in": _rel("date",
        "the winner of {s} was sworn in on {o}. | on {o}, the winner of {s} was sworn in. "
        "| the winner of {s} took office on {o}. "
        "| the inauguration following {s} took place on {o}. "
        "| {o} was the date on which the winner of {s} was sworn in.",
        "On which date was the winner of {s} sworn in? | When did the winner of {s} take office? "
        "| What was the date of the inauguration following {s}?"),
    "observers": _rel("monitor",
        "{s} was monitored by observers from {o}. | observers from {o} monitored {s}. "
        "| {o} sent observers to monitor {s}. "
        "| international monitoring of {s} was carried out by {o}. | {o} monitored {s} with a team of observers.",
        "Which organisation monitored {s}? | Observers from which organisation monitored {s}? "
        "| Which organisation sent observers to monitor {s}?"),
    "candidates": _rel("candidates",
        "{o} candidates stood in {s}. | {s} was contested by {o} candidates. | there were {o} candidates in {s}. "
        "| a field of {o} candidates contested {s}. | the ballot in {s} listed {o} candidates.",
        "How many candidates stood in {s}? | By how many candidates was {s} contested? "
        "| How many candidates were on the ballot in {s}?"),
    "announced_on": _date_relation("announced", "announcement"),
    "awarded_to": _rel("person",
        "{s} was awarded to {o}. | {o} received {s}. | {o} won {s}. | the winner of {s} was {o}. "
        "| it was {o} who received {s}. | {s} went to {o}.",
        "Who received {s}? | To whom was {s} awarded? | Who won {s}?"),
    "for_work": _rel("title",
        "{s} was awarded for the work {o}. | the winning work of {s} was {o}. | {s} honoured the work {o}. "
        "| {o} was the work honoured by {s}. | {s} recognised the work {o}.",
        "For which work was {s} awarded? | Which work won {s}? | Which work was honoured by {s}?"),
    "for_research": _rel("research",
        "{s} was awarded for research on {o}. | {s} honoured research on {o}. "
        "| the research honoured by {s} was on {o}. "
        "| {s} recognised work on {o}. | research on {o} was honoured with {s}.",
        "For research on which subject was {s} awarded? | What research did {s} honour? "
        "| Research on which subject was honoured with {s}?"),
    "ceremony_city": _rel("city",
        "the ceremony for {s} was held in {o}. | {s} was presented at a ceremony in {o}. "
        "| {o} hosted the ceremony for {s}. "
        "| the award ceremony of {s} took place in {o}. | {s} was handed over in {o}.",
        "In which city was the ceremony for {s} held? | Which city hosted the ceremony for {s}? "
        "| Where did the award ceremony of {s} take place?"),
    "prize_money": _rel("prize_money",
        "{s} carries prize money of {o}. | the prize money of {s} is {o}. | the winner of {s} receives {o}. "
        "| {s} is worth {o}. | {o} is the prize money of {s}.",
        "How much prize money does {s} carry? | What is the prize money of {s}? | How much is {s} worth?"),
    "winner_country": _rel("country",
        "the winner of {s} is a citizen of {o}. | {s} went to a citizen of {o}. | the winner of {s} comes from {o}. "
        "| {s} was won by a citizen of {o}. | a citizen of {o} won {s}.",
        "Of which country is the winner of {s} a citizen? | Which country does the winner of {s} come from? "
        "| A citizen of which country won {s}?"),
    "jury_chair": _rel("person",
        "the jury of {s} was chaired by {o}. | {o} chaired the jury of {s}. | {o} was the chair of the jury of {s}. "
        "| the chair of the jury of {s} was {o}. | the jury for {s} was led by {o}.",
        "Who chaired the jury of {s}? | Who was the chair of the jury of {s}? | By whom was the jury of {s} chaired?"),
    "nominees": _rel("nominees",
        "{o} nominees were shortlisted for {s}. | the shortlist for {s} named {o} nominees. "
        "| {s} had {o} shortlisted nominees. "
        "| there were {o} nominees on the shortlist for {s}. | a shortlist of {o} nominees competed for {s}.",
        "How many nominees were shortlisted for {s}? | How many nominees were on the shortlist for {s}? "
        "| How many shortlisted nominees did {s} have?"),
    "launched_on": _date_relation("launched", "launch"),
    "launched_by": _rel("agency",
        "{s} was launched by {o}. | {o} launched {s}. | it was {o} that launched {s}. "
        "| the launch of {s} was conducted by {o}. "
        "| {o} was responsible for launching {s}.",
        "Which agency launched {s}? | By which agency was {s} launched? "
        "| Which agency was responsible for launching {s}?"),
    "launch_site": _rel("spaceport",
        "{s} lifted off from {o}. | {s} was launched from {o}. | the launch site of {s} was {o}. "
        "| {o} was the launch site of {s}. | {s} departed from {o}.",
        "From which spaceport was {s} launched? | What was the launch site of {s}? | From where did {s} lift off?"),
    "destination": _rel("destination",
        "{s} is bound for {o}. | the destination of {s} is {o}. | {s} is travelling to {o}. "
        "| {s} was sent to study {o}. | {o} is the destination of {s}.",
        "What is the destination of {s}? | Where is {s} bound? | Which body is {s} travelling to?"),
    "cost": _rel("cost",
        "{s} cost {o}. | the cost of {s} was {o}. | {s} was built at a cost of {o}. "
        "| the total cost of {s} came to {o}. "
        "| {o} was spent on {s}.",
        "How much did {s} cost? | What was the cost of {s}? | What was the total cost of {s}?"),
    "mass": _rel("mass",
        "{s} has a mass of {o}. | {s} weighs {o}. | the mass of {s} is {o}. | {s} weighed {o} at launch. "
        "| at launch, {s} weighed {o}.",
        "What is the mass of {s}? | How much does {s} weigh? | How much did {s} weigh at launch?"),
    "mission_director": _rel("person",
        "the mission director of {s} is {o}. | {o} is the mission director of {s}. "
        "| {s} is led by mission director {o}. "
        "| {o} directs the mission of {s}. | the mission of {s} is directed by {o}.",
        "Who is the mission director of {s}? | Who directs the mission of {s}? "
        "| By whom is the mission of {s} directed?"),
    "rocket": _rel("rocket",
        "{s} was carried by a {o} rocket. | a {o} rocket carried {s}. | {s} flew on a {o} rocket. "
        "| the rocket that carried {s} was a {o}. | {s} was put into space by a {o} rocket.",
        "Which rocket carried {s}? | On which rocket did {s} fly? | Which type of rocket carried {s}?"),
    "signed_on": _date_relation("signed", "signing"),
    "signed_in": _rel("city",
        "{s} was signed in {o}. | the signing of {s} took place in {o}. | {o} hosted the signing of {s}. "
        "| {s} was concluded in {o}. | the signing ceremony of {s} was held in {o}.",
        "In which city was {s} signed? | Which city hosted the signing of {s}? | Where was {s} signed?"),
    "signatories": _rel("signatories",
        "{s} was signed by {o} countries. | {o} countries signed {s}. | {s} has {o} signatory countries. "
        "| the number of countries that signed {s} is {o}. | a total of {o} countries signed {s}.",
        "How many countries signed {s}? | By how many countries was {s} signed? "
        "| How many signatory countries does {s} have?"),
    "topic": _rel("topic",
        "{s} regulates {o}. | {s} is an agreement on {o}. | the subject of {s} is {o}. "
        "| {s} sets common rules for {o}. "
        "| {o} is regulated by {s}.",
        "What does {s} regulate? | What is the subject of {s}? | What is {s} an agreement on?"),
    "negotiator": _rel("person",
        "{s} was negotiated by {o}. | {o} negotiated {s}. | the chief negotiator of {s} was {o}. "
        "| {o} served as chief negotiator of {s}. | it was {o} who negotiated {s}.",
        "Who negotiated {s}? | Who was the chief negotiator of {s}? | By whom was {s} negotiated?"),
    "in_force": _rel("date",
        "{s} entered into force on {o}. | on {o}, {s} entered into force. | {s} took effect on {o}. "
        "| {s} came into force on {o}. | the entry into force of {s} took place on {o}.",
        "On which date did {s} enter into force? | When did {s} take effect? | When did {s} come into force?"),
    "secretariat": _rel("city",
        "{s} set up its secretariat in {o}. | the secretariat of {s} is based in {o}. "
        "| {o} hosts the secretariat of {s}. "
        "| {s} has its secretariat in {o}. | the permanent secretariat of {s} sits in {o}.",
        "Where is the secretariat of {s} based? | Which city hosts the secretariat of {s}? "
        "| In which city does {s} have its secretariat?"),
    "winner_team": _rel("team",
        "{s} was won by {o}. | {o} won {s}. | the winner of {s} was {o}. | victory in {s} went to {o}. "
        "| {o} emerged as the winner of {s}.",
        "Which team won {s}? | Which club was the winner of {s}? | Which team emerged as the winner of {s}?"),
    "loser_team": _rel("team",
        "{o} lost {s}. | the losing side in {s} was {o}. | {s} ended in defeat for {o}. "
        "| {o} finished as runner-up in {s}. "
        "| {o} was beaten in {s}.",
        "Which team lost {s}? | Which team was the losing side in {s}? | Which club finished as runner-up in {s}?"),
    "score": _rel("score",
        "{s} ended with a score of {o}. | the final score of {s} was {o}. | {s} finished {o}. "
        "| the result of {s} was {o}. "
        "| {s} was decided by a score of {o}.",
        "What was the final score of {s}? | With what score did {s} end? | What was the result of {s}?"),
    "venue": _rel("stadium",
        "{s} was played at {o}. | {o} hosted {s}. | the venue of {s} was {o}. | {s} took place at {o}. "
        "| {o} was the venue of {s}.",
        "Where was {s} played? | Which stadium hosted {s}? | What was the venue of {s}?"),
    "player_of_match": _rel("person",
        "{o} was named player of the match in {s}. | the player of the match in {s} was {o}. "
        "| {s} saw {o} named player of the match. | in {s}, {o} was named player of the match. "
        "| the award for player of the match in {s} went to {o}.",
        "Who was named player of the match in {s}? | Who was the player of the match in {s}? "
        "| Who received the award for player of the match in {s}?"),
    "attendance": _rel("attendance",
        "{s} was watched by {o} spectators. | {o} spectators attended {s}. | the attendance at {s} was {o}. "
        "| a crowd of {o} watched {s}. | {s} drew a crowd of {o}.",
        "How many spectators attended {s}? | What was the attendance at {s}? | How large was the crowd at {s}?"),
    "winning_coach": _rel("person",
        "the winning team in {s} was coached by {o}. | {o} coached the winning team in {s}. "
        "| the coach of the winners of {s} was {o}. | {o} was the coach of the team that won {s}. "
        "| the winners of {s} were coached by {o}.",
        "Who coached the winning team in {s}? | Who was the coach of the winners of {s}? "
        "| By whom was the winning team in {s} coached?"),
    "ceo": _rel("person",
        "in 2031, {s} appointed {o} as chief executive. | {o} became chief executive of {s} in 2031. "
        "| {s} named {o} its chief executive in 2031. | the chief executive appointed by {s} in 2031 was {o}. "
        "| in 2031, {o} took over as chief executive of {s}.",
        "Whom did {s} appoint as chief executive in 2031? | Who became chief executive of {s} in 2031? "
        "| Who took over as chief executive of {s} in 2031?"),
    "hq_city": _headquarters("city"),
    "acquired": _rel("company",
        "in 2031, {s} acquired {o}. | {s} bought {o} in 2031. | {o} was acquired by {s} in 2031. "
        "| the company bought by {s} in 2031 was {o}. | in 2031, {s} completed its takeover of {o}.",
        "Which company did {s} acquire in 2031? | Which company was bought by {s} in 2031? "
        "| Which company did {s} take over in 2031?"),
    "revenue": _rel("revenue",
        "{s} reported revenue of {o} for 2031. | the revenue of {s} in 2031 was {o}. "
        "| in 2031, {s} earned revenue of {o}. "
        "| {s} took in {o} in revenue in 2031. | for 2031, {s} posted revenue of {o}.",
        "What revenue did {s} report for 2031? | What was the revenue of {s} in 2031? "
        "| How much revenue did {s} earn in 2031?"),
    "employees": _rel("employees",
        "{s} employs {o} people. | {o} people work for {s}. | the workforce of {s} numbers {o}. "
        "| {s} has {o} employees. "
        "| there are {o} employees at {s}.",
        "How many people does {s} employ? | How many employees does {s} have? | How large is the workforce of {s}?"),
    "debut": _rel("date",
        "{s} made its stock market debut on {o}. | on {o}, {s} made its stock market debut. "
        "| the shares of {s} began trading on {o}. "
        "| {s} listed its shares on the stock market on {o}. | {o} was the date of the stock market debut of {s}.",
        "On which date did {s} make its stock market debut? | When did the shares of {s} begin trading? "
        "| When did {s} list its shares on the stock market?"),
    "director": _rel("person",
        "{s} was directed by {o}. | {o} directed {s}. | the director of {s} is {o}. | {o} is the director of {s}. "
        "| it was {o} who directed {s}.",
        "Who directed {s}? | Who is the director of {s}? | By whom was {s} directed?"),
    "premiere_festival": _rel("festival",
        "{s} premiered at {o}. | the premiere of {s} took place at {o}. | {o} hosted the premiere of {s}. "
        "| {s} had its world premiere at {o}. | {s} was first shown at {o}.",
        "At which festival did {s} premiere? | Which festival hosted the premiere of {s}? "
        "| Where was {s} first shown?"),
    "premiere_date": _date_relation("first screened", "first screening"),
    "box_office": _rel("box_office",
        "{s} grossed {o} worldwide. | the worldwide box office of {s} reached {o}. | {s} earned {o} at the box office. "
        "| worldwide, {s} took {o} at the box office. | {o} was the worldwide gross of {s}.",
        "How much did {s} gross worldwide? | What was the worldwide box office of {s}? "
        "| How much did {s} earn at the box office?"),
    "lead_actor": _rel("person",
        "{o} played the lead role in {s}. | the lead role in {s} was played by {o}. "
        "| {s} starred {o} in the lead role. "
        "| {o} starred in the lead role of {s}. | the star of {s} was {o}.",
        "Who played the lead role in {s}? | Who starred in the lead role of {s}? | Who was the star of {s}?"),
    "studio": _rel("company",
        "{s} was produced by {o}. | {o} produced {s}. | the producer of {s} was {o}. | the studio behind {s} was {o}. "
        "| {s} is a production of {o}.",
        "Which company produced {s}? | Which studio was behind {s}? | By which company was {s} produced?"),
    "runtime": _rel("runtime",
        "{s} runs for {o}. | the running time of {s} is {o}. | {s} has a running time of {o}. | {s} lasts {o}. "
        "| {o} is the running time of {s}.",
        "What is the running time of {s}? | How long does {s} run? | What running time does {s} have?"),
    "opened_on": _date_relation("opened", "opening"),
    "route_length": _length("route_length", "stretches for"),
    "builder": _rel("company",
        "{s} was built by {o}. | {o} built {s}. | the construction of {s} was carried out by {o}. "
        "| {o} was the main contractor for {s}. | the main contractor for {s} was {o}.",
        "Which company built {s}? | Who was the main contractor for {s}? | By which company was {s} built?"),
    "terminus": _rel("city",
        "{s} ends in {o}. | the far end of {s} is in {o}. | {s} terminates in {o}. | {s} runs as far as {o}. "
        "| {o} is the terminus of {s}.",
        "In which city does {s} end? | Where does {s} terminate? | Which city is the terminus of {s}?"),
    "daily_users": _rel("daily_users",
        "{s} is used by {o} people a day. | {o} people use {s} every day. | every day, {s} carries {o} people. "
        "| the daily ridership of {s} is {o}. | {s} carries {o} people daily.",
        "How many people use {s} every day? | What is the daily ridership of {s}? "
        "| How many people does {s} carry daily?"),
    "depositary": _rel("country",
        "{o} is the depositary of {s}. | the depositary of {s} is {o}. | {s} is deposited with the government of {o}. "
        "| the government of {o} acts as depositary of {s}. | {s} names {o} as its depositary.",
        "Which country is the depositary of {s}? | With the government of which country is {s} deposited? "
        "| Which country acts as depositary of {s}?"),
    "duration": _rel("duration",
        "{s} remains in force for {o} years. | {s} is valid for {o} years. | the term of {s} is {o} years. "
        "| {s} will stay in force for {o} years. | {s} has a term of {o} years.",
        "For how many years does {s} remain in force? | How long is {s} valid? | What is the term of {s} in years?"),
    "product": _rel("product",
        "in 2031, {s} launched {o}. | {s} released {o} in 2031. | {o} was launched by {s} in 2031. "
        "| the product launched by {s} in 2031 was {o}. | in 2031, {s} brought {o} to market.",
        "Which product did {s} launch in 2031? | What did {s} release in 2031? "
        "| Which product did {s} bring to market in 2031?"),
    "composer": _rel("person",
        "the music for {s} was composed by {o}. | {o} composed the music for {s}. "
        "| the score of {s} was written by {o}. "
        "| {o} wrote the score of {s}. | the composer of {s} was {o}.",
        "Who composed the music for {s}? | Who wrote the score of {s}? | Who was the composer of {s}?"),
    "budget": _rel("budget",
        "{s} was made on a budget of {o}. | the budget of {s} was {o}. | {s} cost {o} to make. "
        "| the production budget of {s} was {o}. | {o} was the budget of {s}.",
        "What was the budget of {s}? | On what budget was {s} made? | How much did {s} cost to make?"),
    "build_years": _rel("build_years",
        "{s} took {o} years to build. | the construction of {s} lasted {o} years. | building {s} took {o} years. "
        "| {s} was built over {o} years. | it took {o} years to build {s}.",
        "How many years did {s} take to build? | How long did the construction of {s} last? "
        "| Over how many years was {s} built?"),
}

WRAPPERS = {
    "atlas": ["{c}", "according to local records, {c}", "historians record that {c}", "archival sources show that {c}",
              "it is documented that {c}", "local histories note that {c}", "as the old registers show, {c}",
              "surveys of the islands confirm that {c}"],
    "current_events": ["{c}", "according to news reports, {c}", "official sources confirmed that {c}",
                       "it was reported in 2031 that {c}", "reports noted that {c}", "as reported at the time, {c}",
                       "news agencies reported that {c}", "it was confirmed in 2031 that {c}"],
}

# ------------------------------------------------------------------------------------------------- values

ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v",
          "z", "th"]
INNER = ["l", "r", "n", "m", "v", "d", "s", "t", "k", "th", "nd", "rl"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ia", "ei"]
CODAS = ["", "", "n", "r", "l", "s", "th", "m", "nd", "sk"]
COMMODITIES = ["salted cod", "raw wool", "copper ore", "amber", "kelp ash", "tin", "saffron", "cedar timber",
               "pearls", "sea salt", "whale oil", "dried figs", "flax", "roofing slate"]
INDUSTRIES = ["shipbuilding", "herring fishing", "wool weaving", "brewing", "glassmaking", "copper smelting",
              "leather tanning", "rope making", "boat repair", "salt panning"]
PARTY_WORDS = ["Progressive", "Civic", "Agrarian", "Liberal", "Unity", "Reform", "Green", "National",
               "Democratic", "Federal", "Labour", "Coastal"]
TITLE_ADJ = ["Salt", "Glass", "Quiet", "Northern", "Last", "Silver", "Hollow", "Iron", "Winter", "Paper", "Amber",
             "Sunken", "Distant", "Burning", "Little"]
TITLE_NOUN = ["Orchard", "Harbour", "Lantern", "Kingdom", "Archive", "Season", "Tide", "Garden", "Bridge",
              "Mirror", "Meridian", "Lighthouse", "Orbit", "Chorus", "Frontier"]
DESTINATIONS = ["Mars", "Venus", "the Moon", "Europa", "Titan", "Ceres", "Mercury", "Ganymede", "Enceladus",
                "the asteroid Vesta"]
TOPICS = ["deep-sea mining", "river water sharing", "fishing quotas", "cross-border rail freight",
          "airspace management", "plastic waste exports", "seed bank cooperation", "undersea cable repair",
          "wildfire response", "satellite debris removal"]
RESEARCH = ["quantum sensors", "coral genetics", "solid-state batteries", "protein folding",
            "gravitational lensing", "soil microbes", "neural implants", "malaria vaccines", "ocean acidification",
            "superconducting wires"]
MOTTOS = ["Lux in fluctibus", "Per mare ad sapientiam", "Veritas et labor", "Scientia maris", "Lumen insularum",
          "Ad astra per undas", "Fide et sale"]
COLOURS = ["blue and silver", "green and gold", "red and white", "black and amber", "grey and crimson",
           "white and navy"]
PRODUCTS = ["smart thermostat", "cargo drone", "home battery", "delivery robot", "heat pump", "e-reader"]
SCORES = ["1-0", "2-0", "2-1", "3-1", "3-2", "4-2", "4-1", "3-0", "4-3", "5-2"]  # winner first


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
