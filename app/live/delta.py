"""Patches between two states of a chat's figures: what an update sends instead of all of them.

Most of an update's figures do not change from one update to the next (a new answer moves one
question's counts, one minute of the chart and a few headline numbers), yet the figures of both
windows, the chart and the sources are ~30 KB for an hour's chat: sending them whole to a
thousand screens four times a second was most of the fan-out's bytes and of its clients' work.

A patch is JSON, one of:
- `{"=": value}`: the new value, whole;
- `{"{}": {key: patch, ...}}`: an object with the same keys, only the keys that changed;
- `{"[]": {"index": patch, ...}}`: a list of the same length, only the items that changed.

`diff(old, new)` makes one, `apply(old, patch)` reads it back (`frontend/static/common.js` does
the same in the browser): `apply(old, diff(old, new)) == new` for any JSON values.
"""

from __future__ import annotations

from typing import Any

REPLACE, OBJECT, LIST = "=", "{}", "[]"

# The keys of a snapshot that updates patch (`ChatRuntime._state`).
STATE_KEYS = (
    "figures",
    "figures_all",
    "per_minute",
    "current_question",
    "sources",
    "spend",
    "trends_note",
)


def diff(old: Any, new: Any) -> dict[str, Any]:
    """The patch turning `old` into `new` (the caller checks `old != new` first, or gets a
    patch that changes nothing)."""
    if isinstance(old, dict) and isinstance(new, dict) and old.keys() == new.keys():
        return {OBJECT: {key: diff(old[key], new[key]) for key in new if old[key] != new[key]}}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
        # Most items changed (a top list reordered): the list whole is shorter.
        if len(changed) * 2 <= len(new):
            return {LIST: {str(i): diff(old[i], new[i]) for i in changed}}
    return {REPLACE: new}


def apply(old: Any, patch: dict[str, Any]) -> Any:
    """`old` with `patch` applied (neither is modified)."""
    if REPLACE in patch:
        return patch[REPLACE]
    if OBJECT in patch:
        if not isinstance(old, dict):
            raise ValueError("an object patch for a value that is not an object")
        merged = dict(old)
        for key, part in patch[OBJECT].items():
            merged[key] = apply(old[key], part)
        return merged
    if LIST in patch:
        if not isinstance(old, list):
            raise ValueError("a list patch for a value that is not a list")
        items = list(old)
        for index, part in patch[LIST].items():
            items[int(index)] = apply(old[int(index)], part)
        return items
    raise ValueError(f"not a patch: {sorted(patch)!r}")


def diff_state(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per key of a state object: the patch of each key whose value changed (keys never come
    and go: a key missing from `old` is sent whole)."""
    return {
        key: diff(old[key], value) if key in old else {REPLACE: value}
        for key, value in new.items()
        if key not in old or old[key] != value
    }


def apply_state(state: dict[str, Any], patches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`state` with an update's `state` patches applied."""
    merged = dict(state)
    for key, patch in patches.items():
        merged[key] = apply(state.get(key), patch)
    return merged


class PageState:
    """What a client holds of the figures, as `frontend/static/common.js` does: `take` each
    message in order, and it returns the message with the figures whole (an update's patches
    applied to the snapshot's figures)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def take(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("type") == "snapshot":
            self.state = {key: message[key] for key in STATE_KEYS if key in message}
        elif message.get("type") == "update":
            self.state = apply_state(self.state, message.pop("state", {}))
            message.update(self.state)
        return message
