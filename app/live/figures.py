"""A chat's figures kept up to date in memory, post by post, during a live chat.

`app.stats.chat_stats` counts the figures in the database; it reads the whole chat each time. On the
big screen every newly collected post must update them, so `LiveFigures` keeps the same figures
incrementally: each call (a new post, a re-tag, new metrics, a panel mark, a poll) costs O(log n)
in the number of posts, and `figures()` costs O(questions + polls + top sizes). Its results are
exactly `chat_stats`'s for the same data (same keys, order and tie-breaks), whatever the order in
which posts and updates arrive: a retweet may come before the post it retweets, a staff reply
before the answer it replies to.

How the figures stay exact without rescanning: every post's contribution to the figures that can
change (its rank key, whether it is an answer and to which question, whether it is unanswered) is
remembered on its entry. An update withdraws that contribution, changes the post, and applies the
new one; updates caused by another post (a collected retweet raising the original's retweets, a
staff reply answering an answer) do the same to that one other post.

Participants are people (`LivePost.person`: linked accounts count once). A cross-post's copy
(`copy_of`, decided by `app.ingest.crossposts.CrossPosts` outside) counts in nothing and is not
among the latest posts; its first post lists it under `also`, and a staff reply to the copy
answers the first post. `set_copy` turns a post into a copy or back, withdrawing or applying its
whole contribution.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sortedcontainers import SortedList

from app.ingest.parse import post_network, time_order
from app.ingest.store import max_impressions
from app.links import post_url
from app.stats import TOP_ANSWERS, TOP_TWEETS, also_entry, iso_time

Window = Literal["chat", "all"]

# (-retweets, -likes, created_at, id): ascending order is the figures' ranking, retweets desc,
# likes desc, then the oldest first and the smallest id (as a string, like SQL) first.
RankKey = tuple[int, int, datetime, str]
# (created_at, id): descending order is "newest first", as the posts endpoint orders them.
Stamp = tuple[datetime, str]

_MINUTE = timedelta(minutes=1)


@dataclass(slots=True)
class LivePost:
    """What the live figures need of one collected post."""

    id: str
    author_id: str
    username: str  # "" when the author is unknown
    name: str
    created_at: datetime  # aware UTC
    kind: str  # original | reply | quote | retweet
    text: str
    in_reply_to_id: str | None
    quoted_id: str | None
    retweeted_id: str | None
    poll_id: str | None
    retweet_count: int
    like_count: int
    reply_count: int
    quote_count: int
    impression_count: int | None
    question: int | None  # its current tag
    tag_method: str | None
    handled: bool = False
    hidden: bool = False
    network: str = ""  # x | mastodon | bluesky ("": read off the id)
    status_url: str | None = None  # a Mastodon status's own web page (its payload's `url`)
    person: str = ""  # the author's person key (app/people.py; "": the author id)
    copy_of: str | None = None  # a cross-post's copy: the post it repeats (counted nowhere)


# A post's fields in order: copying through these is a few times faster than copy.copy.
_live_post_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(LivePost)))


@dataclass(frozen=True, slots=True)
class PollState:
    """A poll as last received: options are (position, label, votes)."""

    id: str
    voting_status: str | None
    options: tuple[tuple[int, str, int], ...]


@dataclass(frozen=True, slots=True)
class _Metrics:
    retweet_count: int
    like_count: int
    reply_count: int
    quote_count: int
    impression_count: int | None


class _Tally:
    """The figures of one window (the chat window, or all collected posts)."""

    __slots__ = (
        "answer_authors",
        "answers",
        "authors",
        "kinds",
        "polls",
        "question_top",
        "top",
        "unanswered",
    )

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        # Posts per person, so that participants is the number of keys.
        self.authors: Counter[str] = Counter()
        self.top: SortedList[RankKey] = SortedList()  # non-retweets
        self.answers: Counter[int] = Counter()  # question -> answers
        # Answers per person per question, so that a re-tag can take a participant away. Read
        # with get: a lookup by [] makes an empty entry for the question.
        self.answer_authors: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.question_top: defaultdict[int, SortedList[RankKey]] = defaultdict(SortedList)
        self.unanswered = 0
        # Poll id -> the earliest created_at of a collected post carrying it. Posts are never
        # removed, so the minimum only goes down.
        self.polls: dict[str, datetime] = {}


class _Entry:
    """A collected post and the contribution it made to the figures when last applied."""

    __slots__ = (
        "answer",
        "counted",
        "key",
        "post",
        "staff",
        "tallies",
        "unanswered",
        "writes_answers",
    )

    def __init__(
        self, post: LivePost, tallies: tuple[_Tally, ...], host: bool, staff: bool
    ) -> None:
        self.post = post
        self.tallies = tallies
        # Host posts are never answers; host and panel posts are never unanswered. Both follow
        # from the username, which never changes, so they are fixed at collection.
        self.writes_answers = not host and post.kind != "retweet"
        self.staff = staff
        self.key: RankKey | None = None
        self.answer: int | None = None
        self.unanswered = False
        self.counted = False  # whether `_apply` counted it (a copy counts nowhere)


class LiveFigures:
    """One chat's figures, updated incrementally as posts and changes arrive."""

    def __init__(
        self,
        *,
        slug: str,
        start: datetime,
        end: datetime,
        hosts: Iterable[str],
        panel: Iterable[str],
        questions: Mapping[int, str],
    ) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("the chat window must be given in aware UTC times")
        self._slug = slug
        self._start = start.astimezone(UTC)
        self._end = end.astimezone(UTC)
        self._hosts = frozenset(name.lstrip("@").lower() for name in hosts)
        self._staff = self._hosts | frozenset(name.lstrip("@").lower() for name in panel)
        self._questions: dict[int, str] = dict(questions)
        self._chat = _Tally()
        self._all = _Tally()
        self._entries: dict[str, _Entry] = {}
        # Collected retweets per retweeted id, over the whole chat (not the window), kept for ids
        # not collected yet too: the original may arrive after its retweets.
        self._collected_rts: Counter[str] = Counter()
        # Collected host/panel posts replying to each id, for the same reason.
        self._staff_replies: Counter[str] = Counter()
        # Metrics received for posts not collected (yet): context copies of a post count in the
        # store's max, so they must here too once the post is collected.
        self._pending_metrics: dict[str, _Metrics] = {}
        self._polls: dict[str, tuple[str | None, dict[int, tuple[str, int]]]] = {}
        self._latest: SortedList[Stamp] = SortedList()  # collected posts not hidden
        self._unanswered: SortedList[Stamp] = SortedList()  # any window, as the endpoint
        self._unanswered_by_question: defaultdict[int, SortedList[Stamp]] = defaultdict(SortedList)
        # Minute -> [non-retweets, retweets] collected in the chat window.
        self._minutes: dict[datetime, list[int]] = {}
        # A post's cross-posts' copies (collected or announced by a copy collected first).
        self._copies: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    # -- changes ------------------------------------------------------------------------------

    def add(self, post: LivePost) -> bool:
        """A newly collected post; False (and no change) if the chat has it already."""
        if post.id in self._entries:
            return False
        if post.created_at.tzinfo is None:
            raise ValueError(f"post {post.id} has a naive created_at; give aware UTC times")
        post = LivePost(*_live_post_fields(post))  # ours now: callers change it by the methods
        post.created_at = post.created_at.astimezone(UTC)
        post.person = post.person or post.author_id
        pending = self._pending_metrics.pop(post.id, None)
        if pending is not None:
            self._merge_metrics(post, pending)
        in_chat = self._start <= post.created_at < self._end
        tallies = (self._chat, self._all) if in_chat else (self._all,)
        # Host and panel are known by the post's username, the store by its author's account: the
        # same as long as an account keeps its username during the chat.
        username = post.username.lower()
        staff = bool(username) and username in self._staff
        entry = _Entry(post, tallies, host=bool(username) and username in self._hosts, staff=staff)
        self._entries[post.id] = entry

        # What never changes after collection: its poll (a copy's too: a poll cross-posted is
        # two polls), and, unless a copy, its kind, person and time.
        for tally in tallies:
            if post.poll_id is not None:
                seen = tally.polls.get(post.poll_id)
                if seen is None or post.created_at < seen:
                    tally.polls[post.poll_id] = post.created_at
        if post.copy_of is None:
            self._count(entry, 1)
        self._apply(entry)
        if post.copy_of is not None:
            self._join(post.id, post.copy_of)

        # What this post changes of one other post, collected or still to come.
        if post.kind == "retweet" and post.retweeted_id is not None:
            target = self._entries.get(post.retweeted_id)
            count = self._collected_rts[post.retweeted_id] + 1
            # Only when the collected count overtakes the public metric does the rank move.
            if target is not None and count > target.post.retweet_count:
                self._retract(target)
                self._collected_rts[post.retweeted_id] = count
                self._apply(target)
            else:
                self._collected_rts[post.retweeted_id] = count
        if staff and post.in_reply_to_id is not None:
            # The answer replied to, or the first post of the copy replied to.
            target = self._entries.get(post.in_reply_to_id)
            if target is not None and target.post.copy_of is not None:
                target = self._entries.get(target.post.copy_of)
            if target is not None:
                self._retract(target)
                self._staff_replies[post.in_reply_to_id] += 1
                self._apply(target)
            else:
                self._staff_replies[post.in_reply_to_id] += 1
        return True

    def set_copy(self, post_id: str, copy_of: str | None) -> None:
        """A collected post became a cross-post's copy of `copy_of`, or (None) a post of its
        own again: its whole contribution is withdrawn or applied."""
        entry = self._entry(post_id)
        old = entry.post.copy_of
        if old == copy_of:
            return
        self._retract(entry)
        if old is None:
            self._count(entry, -1)
        else:
            self._leave(post_id, old)
        entry.post.copy_of = copy_of
        if copy_of is None:
            self._count(entry, 1)
        self._apply(entry)
        if copy_of is not None:
            self._join(post_id, copy_of)

    def _join(self, post_id: str, first: str) -> None:
        """`post_id` is a copy of `first`: a staff reply to it answers `first` now."""
        target = self._entries.get(first)
        if target is not None:
            self._retract(target)
        self._copies.setdefault(first, set()).add(post_id)
        if target is not None:
            self._apply(target)

    def _leave(self, post_id: str, first: str) -> None:
        target = self._entries.get(first)
        if target is not None:
            self._retract(target)
        copies = self._copies[first]
        copies.discard(post_id)
        if not copies:
            del self._copies[first]
        if target is not None:
            self._apply(target)

    def _count(self, entry: _Entry, sign: int) -> None:
        """What a post that is no copy counts whatever its tag and metrics: its kind, its
        person, its minute, its place among the latest posts."""
        post = entry.post
        for tally in entry.tallies:
            tally.kinds[post.kind] += sign
            if not tally.kinds[post.kind]:
                del tally.kinds[post.kind]
            tally.authors[post.person] += sign
            if not tally.authors[post.person]:
                del tally.authors[post.person]
        if entry.tallies[0] is self._chat:
            minute = post.created_at.replace(second=0, microsecond=0)
            counts = self._minutes.setdefault(minute, [0, 0])
            counts[1 if post.kind == "retweet" else 0] += sign
        if not post.hidden:
            stamp = (post.created_at, post.id)
            if sign > 0:
                self._latest.add(stamp)
            else:
                self._latest.remove(stamp)

    def set_tag(self, post_id: str, question: int | None, method: str | None) -> None:
        """Re-tag a collected post (the tagger changed its mind, or a manual tag)."""
        entry = self._entry(post_id)
        self._retract(entry)
        entry.post.question = question
        entry.post.tag_method = method
        self._apply(entry)

    def set_metrics(
        self,
        post_id: str,
        *,
        retweet_count: int,
        like_count: int,
        reply_count: int,
        quote_count: int,
        impression_count: int | None,
    ) -> None:
        """A post's public metrics as received again: each keeps the largest value seen, like the
        store. Metrics of a post not collected yet are kept for when it is."""
        metrics = _Metrics(retweet_count, like_count, reply_count, quote_count, impression_count)
        entry = self._entries.get(post_id)
        if entry is None:
            seen = self._pending_metrics.get(post_id)
            if seen is not None:
                metrics = _Metrics(
                    max(seen.retweet_count, retweet_count),
                    max(seen.like_count, like_count),
                    max(seen.reply_count, reply_count),
                    max(seen.quote_count, quote_count),
                    max_impressions(seen.impression_count, impression_count),
                )
            self._pending_metrics[post_id] = metrics
            return
        post = entry.post
        if retweet_count > post.retweet_count or like_count > post.like_count:
            # The rank key may move: withdraw it first.
            self._retract(entry)
            self._merge_metrics(post, metrics)
            self._apply(entry)
        else:
            self._merge_metrics(post, metrics)

    def set_handled(self, post_id: str, handled: bool) -> None:
        entry = self._entry(post_id)
        self._retract(entry)
        entry.post.handled = handled
        self._apply(entry)

    def set_hidden(self, post_id: str, hidden: bool) -> None:
        """Hide a post from the wall (latest()); hidden posts still count in the figures."""
        post = self._entry(post_id).post
        if post.hidden == hidden:
            return
        post.hidden = hidden
        if post.copy_of is not None:
            return  # never among the latest posts
        if hidden:
            self._latest.remove((post.created_at, post.id))
        else:
            self._latest.add((post.created_at, post.id))

    def set_poll(self, poll: PollState) -> None:
        """A poll as received: votes keep the largest value seen and a closed poll stays closed,
        like the store; labels and a known status take the new value."""
        status, options = self._polls.get(poll.id, (None, {}))
        if status != "closed" and poll.voting_status is not None:
            status = poll.voting_status
        options = dict(options)
        for position, label, votes in poll.options:
            _, seen = options.get(position, ("", votes))
            options[position] = (label, max(seen, votes))
        self._polls[poll.id] = (status, options)

    def set_question(self, number: int, text: str) -> None:
        """A question's text: first seen as a host post, or edited."""
        self._questions[number] = text

    # -- reading ------------------------------------------------------------------------------

    def figures(self, window: Window) -> dict[str, Any]:
        """Exactly `app.stats.chat_stats(session, chat, window)` for the same data."""
        if window == "chat":
            tally = self._chat
        elif window == "all":
            tally = self._all
        else:
            raise ValueError(f"unknown window {window!r}; use 'chat' or 'all'")
        # Like stats: the run of show's questions, and any other (non-zero) number answered.
        numbers = sorted(set(self._questions) | {n for n in tally.answers if n})
        questions = []
        for number in numbers:
            top = tally.question_top.get(number)
            questions.append(
                {
                    "number": number,
                    "text": self._questions.get(number, ""),
                    "answers": tally.answers.get(number, 0),
                    "participants": len(tally.answer_authors.get(number, ())),
                    "top": self._objects(top, TOP_ANSWERS) if top else [],
                }
            )
        return {
            "chat": self._slug,
            "window": window,
            "participants": len(tally.authors),
            "original_tweets": sum(n for kind, n in tally.kinds.items() if kind != "retweet"),
            "retweets": tally.kinds.get("retweet", 0),
            "replies": tally.kinds.get("reply", 0),
            "quotes": tally.kinds.get("quote", 0),
            "questions": questions,
            "top_tweets": self._objects(tally.top, TOP_TWEETS),
            "polls": self._poll_objects(tally),
            "unanswered": tally.unanswered,
            "trending": [],
        }

    def latest(self, n: int = 50) -> list[dict[str, Any]]:
        """The newest collected posts first (created_at desc, id desc), hidden ones left out."""
        if n <= 0:
            return []
        return self._objects(reversed(self._latest), n)

    def per_minute(self) -> list[dict[str, Any]]:
        """Posts per minute over the chat window, every minute present: non-retweets (original
        tweets as the figures count them: originals, replies and quotes) and retweets."""
        rows = []
        minute = self._start.replace(second=0, microsecond=0)
        while minute < self._end:
            originals, retweets = self._minutes.get(minute, (0, 0))
            rows.append({"minute": iso_time(minute), "originals": originals, "retweets": retweets})
            minute += _MINUTE
        return rows

    def unanswered(self, question: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Unanswered answers, newest first, among all collected posts (as the unanswered
        endpoint lists them), optionally of one question."""
        stamps = (
            self._unanswered if question is None else self._unanswered_by_question.get(question)
        )
        if not stamps or limit <= 0:
            return []
        return self._objects(reversed(stamps), limit)

    def post(self, post_id: str) -> dict[str, Any] | None:
        return self._object(post_id) if post_id in self._entries else None

    def live_post(self, post_id: str) -> LivePost | None:
        """The collected post as held (read only: change it by the methods)."""
        entry = self._entries.get(post_id)
        return entry.post if entry else None

    def copy_of(self, post_id: str) -> str | None:
        entry = self._entries.get(post_id)
        return entry.post.copy_of if entry else None

    # -- internals ----------------------------------------------------------------------------

    def _entry(self, post_id: str) -> _Entry:
        entry = self._entries.get(post_id)
        if entry is None:
            raise KeyError(f"the chat has not collected post {post_id}")
        return entry

    @staticmethod
    def _merge_metrics(post: LivePost, metrics: _Metrics) -> None:
        post.retweet_count = max(post.retweet_count, metrics.retweet_count)
        post.like_count = max(post.like_count, metrics.like_count)
        post.reply_count = max(post.reply_count, metrics.reply_count)
        post.quote_count = max(post.quote_count, metrics.quote_count)
        post.impression_count = max_impressions(post.impression_count, metrics.impression_count)

    def _retweets(self, post: LivePost) -> int:
        """The larger of the public metric and the retweets of it the chat collected."""
        return max(post.retweet_count, self._collected_rts.get(post.id, 0))

    def _answered(self, post_id: str) -> bool:
        """Whether a staff reply to the post, or to one of its copies, was collected."""
        replies = self._staff_replies
        if replies.get(post_id):
            return True
        copies = self._copies.get(post_id)  # most posts have none: no generator for them
        return copies is not None and any(replies.get(copy) for copy in copies)

    def _apply(self, entry: _Entry) -> None:
        """Count the changeable part of a post's contribution, and remember what was counted."""
        post = entry.post
        key: RankKey = (-self._retweets(post), -post.like_count, post.created_at, post.id)
        entry.key = key
        if post.copy_of is not None:
            entry.answer, entry.unanswered, entry.counted = None, False, False
            return  # a copy counts nowhere
        entry.counted = True
        answer = post.question if entry.writes_answers else None
        unanswered = (
            answer is not None
            and not entry.staff
            and not post.handled
            and not self._answered(post.id)
        )
        for tally in entry.tallies:
            if post.kind != "retweet":
                tally.top.add(key)
            if answer is not None:
                tally.answers[answer] += 1
                tally.answer_authors[answer][post.person] += 1
                tally.question_top[answer].add(key)
                if unanswered:
                    tally.unanswered += 1
        if unanswered:
            assert answer is not None
            stamp = (post.created_at, post.id)
            self._unanswered.add(stamp)
            self._unanswered_by_question[answer].add(stamp)
        entry.key, entry.answer, entry.unanswered = key, answer, unanswered

    def _retract(self, entry: _Entry) -> None:
        """Take back exactly what `_apply` counted for this post."""
        post, key, answer = entry.post, entry.key, entry.answer
        assert key is not None
        if not entry.counted:
            entry.key = None
            return
        for tally in entry.tallies:
            if post.kind != "retweet":
                tally.top.remove(key)
            if answer is not None:
                # Counters drop keys that reach zero so that their lengths stay distinct counts.
                tally.answers[answer] -= 1
                if not tally.answers[answer]:
                    del tally.answers[answer]
                authors = tally.answer_authors[answer]
                authors[post.person] -= 1
                if not authors[post.person]:
                    del authors[post.person]
                tally.question_top[answer].remove(key)
                if entry.unanswered:
                    tally.unanswered -= 1
        if entry.unanswered:
            assert answer is not None
            stamp = (post.created_at, post.id)
            self._unanswered.remove(stamp)
            self._unanswered_by_question[answer].remove(stamp)
        entry.key, entry.answer, entry.unanswered = None, None, False

    def _objects(self, keys: Iterable[RankKey | Stamp], n: int) -> list[dict[str, Any]]:
        """The posts of the first `n` keys. Iterating a sorted list from either end costs O(n);
        slicing it would first rebuild its positional index, O(posts / 1000) after inserts."""
        return [self._object(key[-1]) for key in itertools.islice(keys, n)]

    def _object(self, post_id: str) -> dict[str, Any]:
        """The post as `app.stats.post_object` builds it."""
        post = self._entries[post_id].post
        network = post.network or post_network(post.id)
        return {
            "id": post.id,
            "network": network,
            "username": post.username,
            "name": post.name,
            "text": post.text,
            "created_at": iso_time(post.created_at),
            "kind": post.kind,
            "question": post.question,
            "tag_method": post.tag_method,
            "retweets": self._retweets(post),
            "likes": post.like_count,
            "replies": post.reply_count,
            "quotes": post.quote_count,
            "impressions": post.impression_count or 0,
            "url": post_url(network, post.id, post.username, post.status_url),
            "also": self._also(post.id),
        }

    def _also(self, post_id: str) -> list[dict[str, str]]:
        """The post's copies on other networks, oldest first, as `app.stats.copies_of`."""
        copies = [
            self._entries[c].post for c in self._copies.get(post_id, ()) if c in self._entries
        ]
        copies.sort(key=time_order)
        out = []
        for copy in copies:
            network = copy.network or post_network(copy.id)
            url = post_url(network, copy.id, copy.username, copy.status_url)
            out.append(also_entry(network, copy.id, url))
        return out

    def _poll_objects(self, tally: _Tally) -> list[dict[str, Any]]:
        """Polls carried by the window's posts, by the first time one was posted (then by id:
        SQL leaves equal times unordered), as `app.stats.chat_polls` gives them."""
        polls = []
        for poll_id in sorted(tally.polls, key=lambda pid: (tally.polls[pid], pid)):
            state = self._polls.get(poll_id)
            if state is None:
                continue  # the poll object has not been received
            status, options = state
            total = sum(votes for _, votes in options.values())
            polls.append(
                {
                    "id": poll_id,
                    "voting_status": status,
                    "options": [
                        {
                            "label": label,
                            "votes": votes,
                            "share": round(votes / total, 4) if total else 0.0,
                        }
                        for _, (label, votes) in sorted(options.items())
                    ],
                    "total": total,
                }
            )
        return polls
