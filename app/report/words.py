"""The most used words and phrases of a set of answers, for the report's word clouds.

A word or phrase counts once per answer that uses it (one person repeating a word does not make it
the chat's word). Removed before counting: links, @mentions, the chat's hashtags, question markers
(Q2, A2), numbers and English stop words (wordcloud's list, the classic one, plus the words of
social posts that carry no meaning). Other hashtags keep their word: #curiosity counts as curiosity.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from wordcloud import STOPWORDS

EXTRA_STOPWORDS = {
    "rt",
    "amp",
    "via",
    "im",
    "ive",
    "dont",
    "can",
    "will",
    "just",
    "one",
    "really",
    "us",
    "make",
    "thing",
    "things",
    "way",
    "much",
    "well",
    "many",
    "lot",
    "get",
    "got",
    "yes",
    "thanks",
    "thank",
    "every",
    "actually",
    "still",
    "now",
    "back",
    "came",
    "come",
    "even",
    "going",
    "let",
    "lets",
    "let's",
    "yet",
    "sure",
    "today",
    "tonight",
}
URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
MENTION = re.compile(r"(?<!\w)@\w+")
HASHTAG = re.compile(r"(?<!\w)#(\w+)")
MARKER = re.compile(r"\b(?:re\s*)?[qa]\s*\.?\s*\d+\b", re.IGNORECASE)
# Words with inner apostrophes (don't, leader's); a token with a digit (5th, 2023) is no word.
WORD = re.compile(r"\w+(?:['’]\w+)*")
# Phrases never span the end of a sentence or a clause.
CLAUSE = re.compile(r"[.!?;:,()\[\]\"“”…\n]+|\s[-–—]\s")


@dataclass(frozen=True, slots=True)
class Ranked:
    text: str
    answers: int  # how many answers use it


def _words(clause: str, stop: set[str]) -> list[str | None]:
    """The clause's words, lower case, a stop word as None (it breaks a phrase)."""
    out: list[str | None] = []
    for match in WORD.finditer(clause):
        word = match.group().lower().replace("’", "'")
        if any(ch.isdigit() for ch in word):
            out.append(None)
            continue
        word = word.strip("_")
        if word.endswith("'s"):
            word = word[:-2]
        out.append(None if len(word) < 2 or word in stop else word)
    return out


def stopwords_for(hashtags: Iterable[str]) -> set[str]:
    chat_tags = {tag.lstrip("#").lower() for tag in hashtags}
    return {w.lower() for w in STOPWORDS} | EXTRA_STOPWORDS | chat_tags


def rank_words(
    texts: Iterable[str], hashtags: Iterable[str], limit: int = 60
) -> tuple[list[Ranked], list[Ranked]]:
    """(words, two-word phrases), most used first, ties alphabetical."""
    stop = stopwords_for(hashtags)
    chat_tags = {tag.lstrip("#").lower() for tag in hashtags}
    words: Counter[str] = Counter()
    phrases: Counter[str] = Counter()
    for text in texts:
        text = URL.sub(" ", text)
        text = MENTION.sub(" ", text)
        # The chat's own hashtags go; other hashtags keep their word.
        text = HASHTAG.sub(lambda m: " " if m.group(1).lower() in chat_tags else m.group(1), text)
        text = MARKER.sub(" . ", text)
        seen_words: set[str] = set()
        seen_phrases: set[str] = set()
        for clause in CLAUSE.split(text):
            tokens = _words(clause, stop)
            seen_words.update(t for t in tokens if t)
            for first, second in itertools.pairwise(tokens):
                if first and second and first != second:
                    seen_phrases.add(f"{first} {second}")
        words.update(seen_words)
        phrases.update(seen_phrases)

    def top(counter: Counter[str], minimum: int) -> list[Ranked]:
        items = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        return [Ranked(text, n) for text, n in items[:limit] if n >= minimum]

    # A phrase used once is noise; a word used once still says something in a small chat.
    return top(words, 1), top(phrases, 2)
