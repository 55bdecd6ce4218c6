"""Cross-posts: the same person's same text on several networks, shown and counted once.

A collected non-retweet is a *copy* of another post of the chat when both are by the same person
(one account, or accounts linked with `tweetchat people link`), their texts are the same once
normalized (`normalize`: case and spacing folded, links, @mentions and the chat's hashtags taken
out), they are on different networks, and the copy was posted at most `COPY_WINDOW` after the
other. Copies are counted in no figure and shown as no post of their own; the first post lists
them (`also`).

Which post is the copy is decided from the set of posts alone, never from the order they arrived
in, so a live chat and an import of the same posts agree: a person's posts of one text are taken
in time order (ties by id); each joins the earliest group whose first post is at most
`COPY_WINDOW` older and has no post on its network yet, as its copy, or else starts a group of
its own. Two posts on one network are never copies of each other (a reply "Thanks!" to two
people is two replies; X refuses a repeated text anyway).

`CrossPosts` keeps a chat's groups in memory and, for each post added, says which posts changed
(a post collected late, earlier than its copy, makes that copy's first post a copy): it looks only
at the few posts of the same person and text around the new one.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sortedcontainers import SortedList
from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from app.db.models import Chat, ChatPost, Post
from app.ingest.parse import post_network, time_order

COPY_WINDOW = timedelta(minutes=5)

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# A domain as Mastodon and Bluesky show a shortened link ("example.com/long-pa…").
_DOMAIN = re.compile(r"(?<![\w@.])[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?:/\S*)?", re.IGNORECASE)
# @name, a Mastodon @user@domain, a Bluesky @handle.bsky.social (not an e-mail address).
_MENTION = re.compile(r"(?<![\w@])@[\w.-]+(?:@[\w.-]+)?")
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")
_SPACE = re.compile(r"\s+")
_EDGES = " \t\n.,;:!?…-–—|·"


def normalize(text: str, hashtags: Iterable[str]) -> str:
    """The text two cross-posts share: links, @mentions and the chat's hashtags out, case and
    spacing folded. "" for a text that has nothing else (it never matches another)."""
    tags = {tag.lstrip("#").casefold() for tag in hashtags}
    value = unicodedata.normalize("NFKC", html.unescape(text))
    value = _URL.sub(" ", value)
    value = _MENTION.sub(" ", value)
    value = _DOMAIN.sub(" ", value)
    value = _HASHTAG.sub(lambda m: " " if m.group(1).casefold() in tags else m.group(0), value)
    return _SPACE.sub(" ", value.casefold()).strip(_EDGES)


@dataclass(frozen=True, slots=True)
class CopyInput:
    """What deciding a post's copies needs of it."""

    id: str
    person: str
    created_at: datetime
    text: str


_Member = tuple[datetime, tuple[int, str]]  # (created_at, id order): the group's order


class _Group:
    __slots__ = ("copy_of", "members", "network")

    def __init__(self) -> None:
        self.members: SortedList[_Member] = SortedList()
        self.network: dict[str, str] = {}
        self.copy_of: dict[str, str | None] = {}


class CrossPosts:
    """A chat's posts grouped by person and text, and which are copies of which.

    Most people post on one network only, and a post has a copy only on another network: a
    person's posts wait unread (`_waiting`) until the person's first post on a second network
    arrives; only then are their texts normalized and grouped. What is decided does not depend
    on when that happens (the groups depend on the set of posts alone), so this changes no
    answer, only the work: a chat on one network normalizes no text at all.
    """

    def __init__(self, hashtags: Iterable[str]) -> None:
        self.hashtags = tuple(hashtags)
        self._groups: dict[tuple[str, str], _Group] = {}
        self._known: set[str] = set()
        self._copy_of: dict[str, str] = {}
        self._mixed: set[str] = set()  # people seen on two networks or more
        self._network_of_person: dict[str, str] = {}  # the others' one network
        self._waiting: dict[str, list[CopyInput]] = {}  # the others' posts, not grouped yet

    def input(
        self, post_id: str, person: str, created_at: datetime, kind: str, text: str
    ) -> CopyInput | None:
        """The post as an input, or None when it can be no one's copy nor have one (a
        retweet)."""
        if kind == "retweet":
            return None
        return CopyInput(post_id, person, created_at, text)

    def copy_of(self, post_id: str) -> str | None:
        return self._copy_of.get(post_id)

    def copies(self) -> Mapping[str, str]:
        """Every copy's first post (a view)."""
        return self._copy_of

    def add(self, items: Iterable[CopyInput | None]) -> dict[str, str | None]:
        """Add posts (those known already are skipped); returns the posts whose first post
        changed, new ones included when they are copies: {post id: first post's id or None}."""
        before: dict[str, str | None] = {}
        for item in items:
            if item is None or item.id in self._known:
                continue
            self._known.add(item.id)
            person, network = item.person, post_network(item.id)
            if person in self._mixed:
                self._group(item, before)
            elif person not in self._waiting:
                self._network_of_person[person] = network
                self._waiting[person] = [item]
            elif self._network_of_person[person] == network:
                self._waiting[person].append(item)
            else:  # a second network: the person's posts so far are grouped now
                self._mixed.add(person)
                del self._network_of_person[person]
                for waiting in self._waiting.pop(person):
                    self._group(waiting, before)
                self._group(item, before)
        return {
            post_id: self._copy_of.get(post_id)
            for post_id, old in before.items()
            if self._copy_of.get(post_id) != old
        }

    def _group(self, item: CopyInput, before: dict[str, str | None]) -> None:
        """Put a post in the group of its person and text, and decide that group again."""
        key = normalize(item.text, self.hashtags)
        if not key:
            return  # a text of links and hashtags only: nobody's copy
        before.setdefault(item.id, None)
        group = self._groups.setdefault((item.person, key), _Group())
        member = time_order(item)
        group.members.add(member)
        group.network[item.id] = post_network(item.id)
        for post_id, first in self._regroup(group, group.members.index(member)).items():
            before.setdefault(post_id, self._copy_of.get(post_id))
            if first is None:
                self._copy_of.pop(post_id, None)
            else:
                self._copy_of[post_id] = first

    @staticmethod
    def _regroup(group: _Group, start: int) -> dict[str, str | None]:
        """Decide again the members from `start` (the new one) on, as long as a change there
        can change what follows; returns the new one and those whose first post changed."""
        members = group.members
        begin = members[start][0]
        # The groups still open at the new member: first posts at most COPY_WINDOW older, with
        # the networks they have so far (a copy is never older than its first post).
        opened: dict[str, tuple[datetime, set[str]]] = {}
        low = members.bisect_left((begin - COPY_WINDOW, (0, "")))
        for at, (_, post_id) in members.islice(low, start):
            first = group.copy_of[post_id]
            if first is None:
                opened[post_id] = (at, {group.network[post_id]})
            elif first in opened:
                opened[first][1].add(group.network[post_id])
        changed: dict[str, str | None] = {}
        last_change = begin
        for index in range(start, len(members)):
            at, (_, post_id) = members[index]
            if index > start and at > last_change + COPY_WINDOW:
                break  # nothing changed near enough to change this one or any later
            network = group.network[post_id]
            for closed in [f for f, (t, _) in opened.items() if at - t > COPY_WINDOW]:
                del opened[closed]
            chosen = next((f for f, (_, nets) in opened.items() if network not in nets), None)
            if chosen is None:
                opened[post_id] = (at, {network})
            else:
                opened[chosen][1].add(network)
            if index == start or group.copy_of.get(post_id) != chosen:
                group.copy_of[post_id] = chosen
                changed[post_id] = chosen
                last_change = at
        return changed


def load_copies(session: Session, chat: Chat) -> tuple[CrossPosts, dict[str, str | None]]:
    """The chat's cross-posts worked out from its collected posts, and the stored `copy_of` that
    differ from them: {post id: the right value}."""
    crossposts = CrossPosts(chat.hashtags)
    stored: dict[str, str | None] = {}
    inputs: list[CopyInput] = []
    rows = session.execute(
        select(
            ChatPost.post_id,
            ChatPost.person,
            ChatPost.created_at,
            ChatPost.kind,
            ChatPost.copy_of,
            Post.text,
        )
        .join(Post, and_(Post.network == ChatPost.network, Post.id == ChatPost.post_id))
        .where(ChatPost.chat_id == chat.id, ChatPost.kind != "retweet")
        .execution_options(yield_per=5000)
    )
    for post_id, person, created_at, kind, copy_of, text in rows:
        stored[post_id] = copy_of
        item = crossposts.input(post_id, person, created_at, kind, text)
        if item is not None:
            inputs.append(item)
    inputs.sort(key=time_order)
    crossposts.add(inputs)
    wrong = {
        post_id: crossposts.copy_of(post_id)
        for post_id, copy_of in stored.items()
        if copy_of != crossposts.copy_of(post_id)
    }
    return crossposts, wrong


def save_copies(session: Session, chat_id: int, copies: Mapping[str, str | None]) -> None:
    """Store which post each of these is a copy of (None: none)."""
    if not copies:
        return
    stmt = (
        update(ChatPost)
        .where(
            ChatPost.chat_id == chat_id,
            ChatPost.network == bindparam("b_network"),
            ChatPost.post_id == bindparam("b_post"),
        )
        .values(copy_of=bindparam("b_copy_of"))
    )
    rows = [
        {"b_network": post_network(post_id), "b_post": post_id, "b_copy_of": first}
        for post_id, first in sorted(copies.items())  # a fixed order avoids deadlocks
    ]
    session.connection().execute(stmt, rows)


def refresh_copies(session: Session, chat: Chat) -> int:
    """Work out the chat's cross-posts again and store those that changed; returns how many."""
    _, wrong = load_copies(session, chat)
    save_copies(session, chat.id, wrong)
    return len(wrong)
