"""The question tagger: which of the chat's questions each post answers, and how that was found.

This is the rule set of PRODUCT.md ("How answers are tagged") as a pure, in-memory module: no
database, no I/O. Ingest feeds it the posts it collects (`Tagger.add`), the panel's corrections
(`Tagger.set_manual` / `clear_manual`), and stores the tags it returns as changed.

Two properties shape the design:

* Tags are a function of the set of posts, never of the order they arrived in. A reply collected
  before its parent is re-tagged when the parent arrives; a question post arriving later re-tags
  the time window. Every input that can change a tag is therefore a stored field of a post, and the
  tagger recomputes whatever depends on what was added.
* A chat can hold a million posts, so the tagger keeps no text (only the markers found in it, see
  `TagInput`) and adding a post costs the same whatever the tagger already holds: only the new
  posts and their reply-descendants are recomputed. A host's question post can move question start
  times and the set of valid numbers: then the posts in the time spans whose question moved, those
  naming a number that became valid, and the quotes of the question post are recomputed too (one
  pass over the posts to find them).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "DEFAULT_NUMBERS",
    "NO_TAG",
    "ChatPlan",
    "Method",
    "Tag",
    "TagInput",
    "Tagger",
    "leading_marker",
    "question_marker",
    "trailing_marker",
]

Method = Literal["prefix", "suffix", "reply", "quote", "window", "manual"]

#: Question numbers accepted when a chat has no configured questions (host question posts add more).
DEFAULT_NUMBERS: Final = frozenset(range(1, 21))

# --------------------------------------------------------------------------------------------------
# Markers in text
# --------------------------------------------------------------------------------------------------

# Number right after the label ("A2", "Q.2"): it must not run on into a word or a longer number, so
# "A1c levels", "A2019 audit" and "A2.5 hours" are not markers.
_TIGHT = r"\.?(?P<tight>[0-9]{1,2})(?!\w|[.,][0-9])"
# Number after a space ("A 2:", "Question 2 -"): people write "A 5 minute walk", so a separator
# must follow; a dash or slash must stand alone ("A 2-day course", "A 2/3 of staff" are prose) and
# a colon, dot or bracket must not start another number ("A 2:30pm", "A 2.5 hour").
_SPACED = r"\.?\s+(?P<spaced>[0-9]{1,2})(?=\s*(?:[:.)\]](?![0-9])|[-–—/](?=\s|$)))"
_ANSWER_LABELS = r"answer|ans|question|a|q"  # longest first: the regex takes the first that fits
_QUESTION_LABELS = r"question|q"


def _leading_pattern(labels: str, *, allow_re: bool) -> re.Pattern[str]:
    re_prefix = r"(?:re\s*:\s*|re\s+)?" if allow_re else ""  # "Re Q2:", "RE: A2"
    return re.compile(
        rf"{re_prefix}[(\[#]?(?:{labels})(?:{_TIGHT}|{_SPACED})",
        re.IGNORECASE,
    )


_LEADING_ANSWER: Final = _leading_pattern(_ANSWER_LABELS, allow_re=True)
# A host's "Re Q2: thanks for your answers" is a reply, not the question itself: no "Re" here.
_LEADING_QUESTION: Final = _leading_pattern(_QUESTION_LABELS, allow_re=False)

# What may come before a leading marker: whitespace, @mentions (".@user" loses its dot as stray
# punctuation), hashtags that are not markers (tried after the marker, so "#A2" is a marker), the
# HTML entities the X API leaves in text, and one stray non-word character at a time (emoji, "—").
_LEADING_SKIP: Final = re.compile(r"\s+|[@#]\w+|&(?:amp|lt|gt|quot|apos|#[0-9]+);|\W")

# The last token: "A2", "#A2", "(A2)" / "[A2]" once the closing bracket is stripped, "- A2", "Q2".
# Only the tight form: at the end of prose "I give it a 2" is far likelier than an answer marker.
_TRAILING_MARKER: Final = re.compile(r"(?<![^\s(\[])#?[aq]\.?([0-9]{1,2})\Z", re.IGNORECASE)
_TRAILING_URL: Final = re.compile(r"(?:https?://|www\.|pic\.twitter\.com/)\S*\Z", re.IGNORECASE)
_TRAILING_TAG: Final = re.compile(r"[@#]\w+\Z")


def _number(digits: str | None) -> int | None:
    if digits is None:
        return None
    n = int(digits)
    return n if n >= 1 else None  # "A0" names no question


def _scan_leading(text: str, pattern: re.Pattern[str]) -> int | None:
    pos, size = 0, len(text)
    while pos < size:
        marker = pattern.match(text, pos)
        if marker is not None:
            return _number(marker.group("tight") or marker.group("spaced"))
        skip = _LEADING_SKIP.match(text, pos)
        if skip is None:  # a word that is not a marker: the text has started
            return None
        pos = skip.end()
    return None


def leading_marker(text: str) -> int | None:
    """Rule 1: the number of a question marker at the start of `text` (`A2:`, `Q.2`, `Re Q2:`…).

    Leading whitespace, @mentions, non-marker hashtags and stray punctuation or emoji are skipped;
    a marker later in the text does not count.
    """
    return _scan_leading(text, _LEADING_ANSWER)


def question_marker(text: str) -> int | None:
    """The number of a leading Q-type marker (`Q2.`, `Q2:`, `Q 2 -`, `Question 2:`, `Q.2`).

    Used on a host's posts: one that starts with it is that question's post. `A2` forms do not
    count (a host answering is not asking).
    """
    return _scan_leading(text, _LEADING_QUESTION)


def trailing_marker(text: str) -> int | None:
    """Rule 2: the number of a marker ending `text` (`… A2`, `(A2)`, `[A2]`, `#A2`, `- A2`, `Q2`).

    Trailing whitespace, URLs, @mentions, non-marker hashtags and closing punctuation or emoji are
    skipped first, so `… #LeadingQI #A2 #QIHour https://t.co/x` ends with the marker `#A2`.
    """
    rest = text
    while True:
        rest = rest.rstrip()
        if not rest:
            return None
        # Each pattern matches within the last run of non-space characters (its lookbehind may
        # see the space before it): search from where that run starts, not through all the text.
        start = len(rest) - len(rest.rsplit(None, 1)[-1])
        marker = _TRAILING_MARKER.search(rest, start)
        if marker is not None:
            return _number(marker.group(1))
        junk = _TRAILING_URL.search(rest, start) or _TRAILING_TAG.search(rest, start)
        if junk is not None:
            rest = rest[: junk.start()]
        elif rest[-1].isalnum() or rest[-1] == "_":  # a word that is not a marker
            return None
        else:  # closing punctuation, brackets, emoji
            rest = rest[:-1]


# --------------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    # Comparing naive with aware datetimes raises deep inside the tagger; fail early and by name.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), got naive {value!r}")


@dataclass(frozen=True, slots=True)
class TagInput:
    """What the tagger needs of one post. The text is reduced to its markers to save memory."""

    id: str
    author: str  # username; compared case-insensitively with the hosts
    created_at: datetime  # timezone-aware, UTC
    kind: str  # "original" | "reply" | "quote" | "retweet"
    in_reply_to_id: str | None
    quoted_id: str | None
    # The markers in its text; None for a retweet, whose markers never count.
    lead: int | None  # leading_marker(text)
    trail: int | None  # trailing_marker(text)
    qmark: int | None  # question_marker(text)

    def __post_init__(self) -> None:
        _require_aware(self.created_at, f"post {self.id} created_at")

    @classmethod
    def from_text(
        cls,
        *,
        id: str,
        author: str,
        created_at: datetime,
        kind: str,
        in_reply_to_id: str | None,
        quoted_id: str | None,
        text: str,
    ) -> TagInput:
        """Build the input of one post, finding its markers in `text`."""
        if kind == "retweet":  # almost half of a chat's posts: no need to read them
            return cls(id, author, created_at, kind, in_reply_to_id, quoted_id, None, None, None)
        lead = leading_marker(text)
        return cls(
            id=id,
            author=author,
            created_at=created_at,
            kind=kind,
            in_reply_to_id=in_reply_to_id,
            quoted_id=quoted_id,
            lead=lead,
            trail=trailing_marker(text),
            # A question marker is a leading marker too (its labels are among the answer
            # labels, after the same skips): most posts start with none, and need no third scan.
            qmark=None if lead is None else question_marker(text),
        )


@dataclass(frozen=True, slots=True)
class Tag:
    """A post's question tag: the question number and how it was found, or `Tag(None, None)`.

    A manual "no question" is `Tag(None, "manual")`.
    """

    question: int | None
    method: Method | None


NO_TAG: Final = Tag(None, None)

# Tags are few distinct values (numbers x methods); sharing one instance of each saves memory on
# chats with a million posts.
_TAGS: dict[tuple[int | None, Method | None], Tag] = {(None, None): NO_TAG}


def _tag(question: int | None, method: Method | None) -> Tag:
    key = (question, method)
    tag = _TAGS.get(key)
    if tag is None:
        tag = _TAGS[key] = Tag(question, method)
    return tag


@dataclass(frozen=True)
class ChatPlan:
    """What the tagger needs of a chat."""

    hosts: frozenset[str]  # usernames, lower-cased (the tagger lower-cases them again anyway)
    planned: Mapping[int, datetime | None]  # configured questions: number -> planned time
    start: datetime
    end: datetime  # the chat window is [start, end)

    def __post_init__(self) -> None:
        _require_aware(self.start, "chat start")
        _require_aware(self.end, "chat end")
        for number, at in self.planned.items():
            if at is not None:
                _require_aware(at, f"planned time of question {number}")


# --------------------------------------------------------------------------------------------------
# The tagger
# --------------------------------------------------------------------------------------------------


class Tagger:
    """Tags the posts of one chat, keeping the tags up to date as posts and manual tags arrive.

    Per post, the first rule that applies (PRODUCT.md): a manual tag; retweets: none; host posts:
    their question post's number, else none; then (1) leading marker, (2) trailing marker, (3) a
    reply to a post with a thread question, (4) a quote of a host question post, (5) the question
    current at the post's time. Markers naming a number that is not a valid question are ignored.

    A post's *thread question*, what its replies inherit, is its tag's question, except that a
    host's non-question post (not an answer itself) passes on its parent's thread question or that
    of the question post it quotes, and a retweet passes on nothing.
    """

    def __init__(self, plan: ChatPlan) -> None:
        self._hosts = frozenset(h.lower().lstrip("@") for h in plan.hosts)
        self._planned: dict[int, datetime | None] = dict(plan.planned)
        self._end = plan.end
        self._posts: dict[str, TagInput] = {}
        self._tags: dict[str, Tag] = {}
        # Thread questions that differ from the tag's question (host posts inside a thread); kept
        # apart so that the common case costs no memory.
        self._host_threads: dict[str, int] = {}
        # parent id -> ids of the added posts replying to it (the parent may not be added yet).
        self._children: dict[str, list[str]] = {}
        self._question_ids: set[str] = set()  # host question posts
        self._manual: dict[str, int | None] = {}  # kept for posts not added yet, too
        # Posts run through the rules: lets tests check that work is proportional to what changed.
        self._computed = 0
        self._refresh_questions()

    # ---- public interface -----------------------------------------------------------------------

    def add(self, posts: Iterable[TagInput]) -> dict[str, Tag]:
        """Add (or re-add) posts; returns the new tag of every post whose tag changed.

        New posts are always in the result, even untagged. Re-adding an identical post is free.
        """
        batch = {post.id: post for post in posts}  # a post repeated in one batch: the last wins
        touched: list[str] = []
        flipped: set[str] = set()  # posts whose question number changed (new question posts)
        for post_id, post in batch.items():
            old = self._posts.get(post_id)
            if old == post:  # duplicate delivery
                continue
            if old is None or old.in_reply_to_id != post.in_reply_to_id:
                if old is not None:
                    self._unlink(old)
                self._link(post)
            number = self._question_number(post)
            if number is not None:
                self._question_ids.add(post_id)
            else:
                self._question_ids.discard(post_id)
            if number != (None if old is None else self._question_number(old)):
                flipped.add(post_id)
            self._posts[post_id] = post
            touched.append(post_id)
        if not touched:
            return {}
        if flipped:
            # Question starts and valid numbers may have moved: the posts whose window, marker or
            # quote tag can change are recomputed with the added ones.
            before = (self._valid, self._start_times, self._start_numbers)
            self._refresh_questions()
            return self._recompute(
                self._with_descendants([*touched, *self._moved_by_questions(before, flipped)])
            )
        return self._recompute(self._with_descendants(touched))

    def set_manual(self, post_id: str, question: int | None) -> dict[str, Tag]:
        """Set the panel's tag of a post (`None`: answers no question); it wins over every rule.

        Replies inherit it through rule 3. A manual tag of a post not added yet is kept and applies
        when the post arrives. Returns the changed tags (the post and its reply-descendants).
        """
        if post_id in self._manual and self._manual[post_id] == question:
            return {}
        self._manual[post_id] = question
        return self._recompute(self._with_descendants([post_id]))

    def clear_manual(self, post_id: str) -> dict[str, Tag]:
        """Remove the panel's tag of a post: the rules apply again. Returns the changed tags."""
        if post_id not in self._manual:
            return {}
        del self._manual[post_id]
        return self._recompute(self._with_descendants([post_id]))

    def tag(self, post_id: str) -> Tag:
        """The tag of a post; `Tag(None, None)` for an unknown id."""
        return self._tags.get(post_id, NO_TAG)

    def tags(self) -> Mapping[str, Tag]:
        """A read-only, live view of every post's tag."""
        return MappingProxyType(self._tags)

    def question_posts(self) -> dict[int, tuple[str, datetime]]:
        """The earliest host question post of each number: (post id, created_at)."""
        return dict(self._question_posts)

    def question_starts(self) -> dict[int, datetime]:
        """When each question started: its question post's time, else its planned time."""
        return dict(self._starts)

    def valid_numbers(self) -> frozenset[int] | None:
        """The question numbers markers may name; `None` means the default 1..20."""
        if not self._planned and self._valid == DEFAULT_NUMBERS:
            return None
        return self._valid

    def __len__(self) -> int:
        return len(self._posts)

    # ---- structure ------------------------------------------------------------------------------

    def _link(self, post: TagInput) -> None:
        if post.in_reply_to_id is not None:
            self._children.setdefault(post.in_reply_to_id, []).append(post.id)

    def _unlink(self, post: TagInput) -> None:
        if post.in_reply_to_id is None:
            return
        siblings = self._children.get(post.in_reply_to_id)
        if siblings is not None and post.id in siblings:
            siblings.remove(post.id)
            if not siblings:
                del self._children[post.in_reply_to_id]

    def _with_descendants(self, roots: Iterable[str]) -> set[str]:
        """The added posts among `roots`, and all their reply-descendants (cycles included)."""
        found: set[str] = set()
        stack = [r for r in roots if r in self._posts]
        while stack:  # iterative: reply chains can be thousands deep
            post_id = stack.pop()
            if post_id not in found:
                found.add(post_id)
                stack.extend(self._children.get(post_id, ()))
        return found

    def _is_host(self, post: TagInput) -> bool:
        return post.author.lower().lstrip("@") in self._hosts

    def _question_number(self, post: TagInput) -> int | None:
        """The number of a host question post, else None."""
        if post.qmark is None or post.kind == "retweet" or not self._is_host(post):
            return None
        return post.qmark

    def _refresh_questions(self) -> None:
        earliest: dict[int, tuple[datetime, str]] = {}
        for post_id in self._question_ids:
            post = self._posts[post_id]
            number = self._question_number(post)
            if number is None:
                continue
            key = (post.created_at, post_id)  # the id breaks ties, so the choice is order-free
            if number not in earliest or key < earliest[number]:
                earliest[number] = key
        self._question_posts = {n: (pid, at) for n, (at, pid) in earliest.items()}
        base = set(self._planned) if self._planned else set(DEFAULT_NUMBERS)
        self._valid = frozenset(base | earliest.keys())
        starts: dict[int, datetime] = {}
        for number in self._valid:
            if number in earliest:
                starts[number] = earliest[number][0]
            elif (planned := self._planned.get(number)) is not None:
                starts[number] = planned
        ordered = sorted(starts.items(), key=lambda item: (item[1], item[0]))
        self._starts = dict(ordered)
        self._start_times = [at for _, at in ordered]
        self._start_numbers = [number for number, _ in ordered]

    def _moved_by_questions(
        self, before: tuple[frozenset[int], list[datetime], list[int]], flipped: set[str]
    ) -> list[str]:
        """The posts whose rules may give another tag now that the question posts changed from
        `before` (valid numbers, start times and their numbers) and `flipped` became (or stopped
        being) question posts: markers naming a number that became valid or stopped being so,
        posts in a time span whose current question moved, and quotes of the flipped posts.

        The rest of a post's rules read only the post, its parent's thread (its reply-ancestors
        are recomputed first when they are in the scope) and the quoted post's own fields. One
        pass over the posts, where recomputing them all cost ten times more (a host question
        post arriving in a 100,000-post chat).
        """
        valid, times, numbers = before
        markers = valid ^ self._valid
        spans = _window_changes(times, numbers, self._start_times, self._start_numbers)
        if not markers and not spans:
            return [pid for pid, p in self._posts.items() if p.quoted_id in flipped]
        moved = []
        for post_id, post in self._posts.items():
            if (
                post.quoted_id in flipped
                or (markers and (post.lead in markers or post.trail in markers))
                or any(
                    lo <= post.created_at and (hi is None or post.created_at < hi)
                    for lo, hi in spans
                )
            ):
                moved.append(post_id)
        return moved

    # ---- the rules ------------------------------------------------------------------------------

    def _thread_of(self, post_id: str | None) -> int | None:
        """The question a reply to `post_id` inherits (None for missing posts and retweets)."""
        if post_id is None:
            return None
        post = self._posts.get(post_id)
        if post is None or post.kind == "retweet":
            return None
        tag = self._tags.get(post_id)
        if tag is not None and tag.question is not None:
            return tag.question
        return self._host_threads.get(post_id)

    def _quoted_question(self, post: TagInput) -> int | None:
        if post.quoted_id is None:
            return None
        quoted = self._posts.get(post.quoted_id)
        return None if quoted is None else self._question_number(quoted)

    def _window(self, at: datetime) -> int | None:
        if at >= self._end:
            return None
        return _current(self._start_times, self._start_numbers, at)

    def _rules(self, post: TagInput, parent_thread: int | None) -> tuple[Tag, int | None]:
        """The tag of one post and its thread question, given its parent's thread question."""
        self._computed += 1
        if post.id in self._manual:
            question = self._manual[post.id]
            return _tag(question, "manual"), None if post.kind == "retweet" else question
        if post.kind == "retweet":
            return NO_TAG, None
        if self._is_host(post):
            if post.qmark is not None:  # its number is valid: host question numbers always are
                return _tag(post.qmark, "prefix"), post.qmark
            thread = parent_thread if parent_thread is not None else self._quoted_question(post)
            return NO_TAG, thread
        valid = self._valid
        if post.lead is not None and post.lead in valid:
            return _tag(post.lead, "prefix"), post.lead
        if post.trail is not None and post.trail in valid:
            return _tag(post.trail, "suffix"), post.trail
        if parent_thread is not None:
            return _tag(parent_thread, "reply"), parent_thread
        quoted = self._quoted_question(post)
        if quoted is not None:
            return _tag(quoted, "quote"), quoted
        current = self._window(post.created_at)
        if current is not None:
            return _tag(current, "window"), current
        return NO_TAG, None

    def _recompute(self, scope: set[str]) -> dict[str, Tag]:
        """Re-run the rules on `scope` (closed under reply-descendants), parents before children.

        Posts outside the scope do not depend on anything in it, so their stored thread questions
        are current. A reply cycle (malformed data) has no first post: its members are tagged as
        if their parent were missing, which is still a function of the post set alone.
        """
        changes: dict[str, Tag] = {}
        posts = self._posts
        done: set[str] = set()
        detached: set[str] = set()  # reply-cycle members: parent link ignored
        pending = deque(pid for pid in scope if posts[pid].in_reply_to_id not in scope)
        while True:
            while pending:
                post_id = pending.popleft()
                if post_id in done:
                    continue
                done.add(post_id)
                post = posts[post_id]
                parent = None if post_id in detached else self._thread_of(post.in_reply_to_id)
                tag, thread = self._rules(post, parent)
                if self._tags.get(post_id) != tag:
                    self._tags[post_id] = tag
                    changes[post_id] = tag
                if thread is not None and thread != tag.question:
                    self._host_threads[post_id] = thread
                else:
                    self._host_threads.pop(post_id, None)
                pending.extend(self._children.get(post_id, ()))
            if len(done) == len(scope):
                return changes
            # What is left hangs from reply cycles: break them, then carry on down from them.
            cycles = self._cycle_members(scope - done)
            if not cycles:  # cannot happen with a consistent children index; never loop forever
                raise RuntimeError("tagger: posts unreachable from any thread root")
            detached |= cycles
            pending.extend(cycles)

    def _cycle_members(self, rest: set[str]) -> set[str]:
        """The posts of `rest` on a reply cycle; each post of `rest` has its parent in `rest`."""
        walk_of: dict[str, int] = {}
        members: set[str] = set()
        for walk, start in enumerate(rest):
            path: list[str] = []
            node: str | None = start
            while node is not None and node in rest and node not in walk_of:
                walk_of[node] = walk
                path.append(node)
                node = self._posts[node].in_reply_to_id
            if node is not None and walk_of.get(node) == walk:
                members.update(path[path.index(node) :])
        return members


def _current(times: list[datetime], numbers: list[int], at: datetime) -> int | None:
    """The question current at `at`, given the start times in order and their numbers."""
    i = bisect_right(times, at) - 1
    return numbers[i] if i >= 0 else None


def _window_changes(
    old_times: list[datetime],
    old_numbers: list[int],
    times: list[datetime],
    numbers: list[int],
) -> list[tuple[datetime, datetime | None]]:
    """The spans [from, until) (None: no end) where the current question differs between two
    lists of starts. Between two consecutive start times of either list, both are constant."""
    if old_times == times and old_numbers == numbers:
        return []
    edges = sorted(set(old_times) | set(times))
    spans: list[tuple[datetime, datetime | None]] = []
    for i, edge in enumerate(edges):
        if _current(old_times, old_numbers, edge) == _current(times, numbers, edge):
            continue
        until = edges[i + 1] if i + 1 < len(edges) else None
        if spans and spans[-1][1] == edge:  # joins the span before
            spans[-1] = (spans[-1][0], until)
        else:
            spans.append((edge, until))
    return spans
