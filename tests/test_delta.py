"""Updates carry patches of the figures (app/live/delta.py); the browser applies them with
`applyPatch` in frontend/static/common.js. Both must turn the old figures into the new ones."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.live.delta import PageState, apply, diff, diff_state
from tests.browser import PageServer, launch_chromium
from tests.conftest import FIXTURES
from tests.helpers import make_cli_runner

QI = FIXTURES / "qi-chat.jsonl"

# Integers a browser holds exactly (JSON numbers are doubles there).
scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutate(value: Any, data: st.DataObject) -> Any:
    """A value like `value`: some leaves changed, or the whole replaced."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        changed = dict(value)
        key = data.draw(st.sampled_from(sorted(value)))
        changed[key] = _mutate(value[key], data)
        return changed
    if isinstance(value, list) and value and data.draw(st.booleans()):
        items = list(value)
        index = data.draw(st.integers(0, len(items) - 1))
        items[index] = _mutate(items[index], data)
        return items
    return data.draw(json_values)


@settings(max_examples=300, deadline=None)
@given(old=json_values, data=st.data())
def test_a_patch_turns_the_old_value_into_the_new(old: Any, data: st.DataObject) -> None:
    new = _mutate(old, data)
    kept = copy.deepcopy(old)
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert old == kept  # neither is modified
    # A patch goes over the wire as JSON and comes back the same.
    assert apply(old, json.loads(json.dumps(patch))) == new


def test_an_update_sends_only_what_changed() -> None:
    figures: dict[str, Any] = {
        "participants": 10,
        "questions": [{"number": n, "answers": n, "top": [{"id": str(n)}] * 5} for n in range(8)],
    }
    before: dict[str, Any] = {"figures": figures, "spend": {"usd": 0.5}, "trends_note": ""}
    after = copy.deepcopy(before)
    after["figures"]["questions"][3]["answers"] += 1
    after["figures"]["participants"] += 1
    patches = diff_state(before, after)
    assert set(patches) == {"figures"}  # unchanged keys are left out
    assert patches["figures"] == {
        "{}": {"participants": {"=": 11}, "questions": {"[]": {"3": {"{}": {"answers": {"=": 4}}}}}}
    }
    page = PageState()
    page.take({"type": "snapshot", **before})
    assert page.take({"type": "update", "state": patches})["figures"] == after["figures"]
    with pytest.raises(ValueError, match="not a patch"):
        apply(1, {"?": 2})


@pytest.fixture(scope="module")
def js_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A page of the app with frontend/static/common.js loaded as a module."""
    tmp = Path(tmp_path_factory.mktemp("delta"))
    url = f"sqlite:///{tmp / 'tweetchat.db'}"
    make_cli_runner(url)("chat", "list")
    with PageServer(Settings(database_url=url)) as server, launch_chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.evaluate("async () => { window.common = await import('/static/common.js'); }")
        yield page
        page.close()


@settings(max_examples=60, deadline=None)
@given(old=json_values, data=st.data())
def test_the_browser_applies_patches_as_the_server_means_them(
    js_page: Any, old: Any, data: st.DataObject
) -> None:
    new = _mutate(old, data)
    patch = diff(old, new)
    got = js_page.evaluate("([old, patch]) => window.common.applyPatch(old, patch)", [old, patch])
    assert got == new
