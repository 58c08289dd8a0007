"""The prompts sent to the LLM (GPT-4 in the paper; the offline author kinject.demo.author in the demo).
Each asks for a JSON object itself, so JSON mode is not needed. Changing a prompt changes every cache key."""

from __future__ import annotations

import json

QUESTIONS = """Write {n} highly specific multiple-choice questions about the text below.
Each question has exactly {options} answer options, exactly one of which is correct.
Each question must be answerable without seeing the text: name every person, place, organisation and
date in full, and never refer to "the text", "the passage" or "the article". Keep ambiguity minimal.
Return a JSON object with one key, "questions": a list of objects with keys "question" (string),
"choices" (list of {options} strings) and "answer" (the 0-based index of the correct choice).

Text:
{text}"""

SELECT = """Below are {n} multiple-choice questions written about one text.
Choose the {keep} most specific questions: those with the least ambiguity and a single clearly correct answer.
Return a JSON object with one key, "keep": a list of the {keep} chosen 0-based question indices.

Questions:
{questions}"""

# The paper's paraphrase prompt (Ovadia et al., 2023, appendix), with its two worked examples.
PARAPHRASE = """Your task is to paraphrase a text paragraph. The paragraph is given below.
Make sure to keep the same meaning but change the wording. Do not change any factual information.
Try to keep roughly the same length of the original text.
Give {n} different paraphrases for each text.
These paraphrases should be as different from each other as possible.
Return a JSON formatted string with one key, called 'paraphrases', and a list of paraphrases.
Input paragraph:
{text}

Below are some examples. First, an example taken from the following Wikipedia page: "51st International Emmy Awards".

Paraphrase I
The fifty-first edition of the International Emmy Awards Competition accepted submissions across all categories
from December 7, 2022, until the closing date of February 16, 2023.
Paraphrase II
The International Emmy Awards Competition, now in its 51st year, accepted submissions across all categories
starting from December 7, 2022, until the deadline on February 16, 2023.
Paraphrase III
The fifty-first edition of the International Emmy Awards Competition accepted submissions across all categories
from December 7, 2022, until the closing date of February 16, 2023.

The next example was taken from the following Wikipedia page: "2023 Indianapolis mayoral election".

Paraphrase I
The mayoral election in Indianapolis took place on November 7, 2023, with preliminary elections
occurring on May 2. The sitting mayor, Democrat Joe Hogsett, successfully ran for a third term. Both Hogsett and
his Republican opponent, Jefferson Shreve, moved on to the main election.
Paraphrase II
On November 7, 2023, citizens of Indianapolis cast their votes to elect their Mayor, following
primary elections on May 2. Joe Hogsett, the Democrat already in office, won his bid for a third term. Hogsett
and the Republican candidate, Jefferson Shreve, were the two contenders in the final electoral round.
Paraphrase III
The mayoral election in Indianapolis took place on the 7th of November, 2023, following primary elections that
occurred on the 2nd of May. Joe Hogsett, the incumbent Democrat, successfully ran for a third term. Both Hogsett
and his Republican challenger, Jefferson Shreve, made it through to the final round of the election."""


def user(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def questions_messages(text: str, n: int, options: int = 4) -> list[dict]:
    return user(QUESTIONS.format(n=n, options=options, text=text))


def select_messages(questions: list[dict], keep: int) -> list[dict]:
    listing = json.dumps(questions, indent=1, ensure_ascii=False)
    return user(SELECT.format(n=len(questions), keep=keep, questions=listing))


def paraphrase_messages(text: str, n: int) -> list[dict]:
    return user(PARAPHRASE.format(n=n, text=text))


# Synthetic continued pre-training (EntiGraph: Yang et al., ICLR 2025, "Synthetic continued pretraining", section 2.2),
# its two steps in this project's wording: the salient entities of a document, then for a pair (or triple) of them a
# text about how they relate in the document. kinject.qa.entigraph sends them; docs/training_arms.md lists them.
ENTITIES = """You are a knowledge analyst. Read the document below and list its salient entities: every person, place,
organisation, object, event, date, number and concept that the document says something about.
Name each entity the way the document names it, in full, and list each one once.
Return a JSON object with two keys: "summary" (two sentences on what the document is about) and "entities" (a list of
strings).

Document:
{text}"""

RELATION = """You are a knowledge analyst. Below is a document and {n} entities that it mentions: {listing}.
Write a passage of a few sentences that explains how these entities relate to each other in the document. Use only
what the document says; state every fact about them with the entities named in full, and do not refer to "the
document", "the text" or "the article".
Return a JSON object with one key, "text": the passage.

Document:
{text}"""


def entities_messages(text: str) -> list[dict]:
    return user(ENTITIES.format(text=text))


def relation_messages(text: str, entities: list[str]) -> list[dict]:
    listing = "; ".join(f'"{e}"' for e in entities)
    return user(RELATION.format(n=len(entities), listing=listing, text=text))
