"""What the big screen and the panel show of a chat, beyond its figures: the wall of posts
(with the screen's mode, delay, approvals and block lists), the pinned posts, the claims on
unanswered answers, and what changed since the last update."""

from __future__ import annotations

import heapq
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WALL_SIZE = 30
QUEUE_SIZE = 200


@dataclass(slots=True)
class ScreenSettings:
    mode: str = "immediate"
    delay_seconds: int = 30
    blocked_words: list[str] = field(default_factory=list)
    blocked_accounts: list[str] = field(default_factory=list)
    public: bool = True
    current_question: int | None = None

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ScreenSettings:
        return cls(**{k: value[k] for k in cls.__slots__ if k in value})

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "delay_seconds": self.delay_seconds,
            "blocked_words": list(self.blocked_words),
            "blocked_accounts": list(self.blocked_accounts),
            "public": self.public,
            "current_question": self.current_question,
        }


@dataclass
class ScreenState:
    settings: ScreenSettings = field(default_factory=ScreenSettings)
    wall: deque[str] = field(default_factory=lambda: deque(maxlen=WALL_SIZE))  # newest last
    held: dict[str, float] = field(default_factory=dict)  # post id → release time (inf: approval)
    # (release time, post id) of the posts held for a time, soonest first; an entry whose post
    # is no longer held at that time (shown, hidden, approved) is dropped when it comes up.
    _timed: list[tuple[float, str]] = field(default_factory=list)
    approved: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)
    pinned: list[str] = field(default_factory=list)  # newest pin first
    claims: dict[str, str] = field(default_factory=dict)
    wall_add: list[str] = field(default_factory=list)
    wall_remove: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # "pinned", "screen", "queue", "hidden", "chat"
    _blocked: re.Pattern[str] | None = None

    def configure(self, settings: ScreenSettings) -> None:
        self.settings = settings
        words = [w for w in settings.blocked_words if w.strip()]
        self._blocked = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.I)
            if words
            else None
        )
        self.changed.add("screen")

    def allows(self, post: dict[str, Any]) -> bool:
        """Whether a post may ever reach the screen (block lists, hidden, retweets)."""
        if post["kind"] == "retweet" or post["id"] in self.hidden:
            return False
        if post["username"].lower() in {a.lower() for a in self.settings.blocked_accounts}:
            return False
        return not (self._blocked and self._blocked.search(post["text"]))

    def arrive(self, post: dict[str, Any], now: float) -> None:
        """A newly collected post, on its way to the screen as the mode says."""
        if not self.allows(post):
            return
        mode = self.settings.mode
        if mode == "immediate" or (mode == "approval" and post["id"] in self.approved):
            self._show(post["id"])
        elif mode == "delay":
            self.hold(post["id"], now + self.settings.delay_seconds)
        else:
            self.hold(post["id"], math.inf)

    def hold(self, post_id: str, until: float) -> None:
        """Keep a post off the screen until `until` (monotonic seconds; inf: until approved)."""
        self.held[post_id] = until
        if until != math.inf:
            heapq.heappush(self._timed, (until, post_id))

    def release_all(self) -> None:
        """Every held post goes to the screen at the next `release_due`."""
        for post_id in list(self.held):
            self.hold(post_id, 0.0)

    def release_due(self, now: float) -> float:
        """Show the posts whose time has come; returns when the next one's comes (inf: none
        is held for a time). Costs what it releases, not what is held: in approval mode every
        post waiting for approval is held."""
        timed, held = self._timed, self.held
        while timed:
            until, post_id = timed[0]
            if held.get(post_id) != until:  # shown, hidden, approved or held again since
                heapq.heappop(timed)
            elif until <= now:
                heapq.heappop(timed)
                del held[post_id]
                self._show(post_id)
            else:
                return until
        return math.inf

    def _show(self, post_id: str) -> None:
        if post_id in self.wall:
            return
        if len(self.wall) == self.wall.maxlen:
            self.wall_remove.append(self.wall[0])
        self.wall.append(post_id)
        self.wall_add.append(post_id)

    def hide(self, post_id: str, hidden: bool) -> None:
        self.changed.add("hidden")
        if hidden:
            self.hidden.add(post_id)
            self.held.pop(post_id, None)
            self.hide_from_wall(post_id)
            if post_id in self.pinned:
                self.pinned.remove(post_id)
                self.changed.add("pinned")
        else:
            self.hidden.discard(post_id)

    def hide_from_wall(self, post_id: str) -> None:
        if post_id in self.wall:
            self.wall.remove(post_id)
            self.wall_remove.append(post_id)

    def approve(self, post: dict[str, Any], approved: bool) -> None:
        post_id = post["id"]
        if approved:
            self.approved.add(post_id)
            self.held.pop(post_id, None)
            if self.allows(post):
                self._show(post_id)
        else:
            self.approved.discard(post_id)
            if self.settings.mode == "approval":
                self.hide_from_wall(post_id)

    def set_pins(self, pinned: list[str]) -> None:
        if pinned != self.pinned:
            self.pinned = list(pinned)
            self.changed.add("pinned")

    def claim(self, post_id: str, by: str | None) -> None:
        if by is None:
            self.claims.pop(post_id, None)
        else:
            self.claims[post_id] = by
        self.changed.add("queue")

    def take_changes(self) -> tuple[list[str], list[str], set[str]]:
        added, removed, changed = self.wall_add, self.wall_remove, self.changed
        self.wall_add, self.wall_remove, self.changed = [], [], set()
        # A post added and removed within one update never reached a page.
        both = set(added) & set(removed)
        return [p for p in added if p not in both], [p for p in removed if p not in both], changed
