"""Tests of the question tagger: marker forms in real-looking tweets, each tagging rule in order,
and the promise that tags depend on the set of posts, never on the order they arrived in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest.tagger import (
    ChatPlan,
    Tag,
    Tagger,
    TagInput,
    leading_marker,
    question_marker,
    trailing_marker,
)

T0 = datetime(2023, 3, 28, 18, 0, tzinfo=UTC)
HOST = "WarwickBSchool"


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def post(
    pid: str,
    text: str = "Great chat tonight",
    *,
    author: str = "alice",
    minute: float = 30,
    kind: str | None = None,
    reply_to: str | None = None,
    quote: str | None = None,
) -> TagInput:
    if kind is None:
        kind = "quote" if quote else "reply" if reply_to else "original"
    return TagInput.from_text(
        id=pid,
        author=author,
        created_at=at(minute),
        kind=kind,
        in_reply_to_id=reply_to,
        quoted_id=quote,
        text=text,
    )


def plan(
    planned: Mapping[int, datetime | None] | None = None, *, hosts: frozenset[str] | None = None
) -> ChatPlan:
    return ChatPlan(
        hosts=frozenset({HOST.lower()}) if hosts is None else hosts,
        planned={n: None for n in range(1, 7)} if planned is None else planned,
        start=at(0),
        end=at(60),
    )


def tagger_with(*posts: TagInput, chat: ChatPlan | None = None) -> Tagger:
    tagger = Tagger(plan() if chat is None else chat)
    tagger.add(posts)
    return tagger


# Question posts of a six-question chat, as the host wrote them in March 2023.
Q1 = post("q1", "Q1. Let's start with a poll! Is this your first tweetchat?", author=HOST, minute=2)
Q2 = post(
    "q2",
    "Q2. Why is it important that leaders lead from the front and light the path for others? "
    "#LeadingQI #QIHour",
    author=HOST,
    minute=10,
)
Q3 = post("q3", "Q3: When have you seen poor leadership being a barrier?", author=HOST, minute=20)
QUESTIONS = (Q1, Q2, Q3)


# --------------------------------------------------------------------------------------------------
# Markers
# --------------------------------------------------------------------------------------------------

LEADING = [
    ("A2 Leaders set the tone for everyone else #QIHour #LeadingQI", 2),
    ("Q2 Why is it important that leaders lead from the front?", 2),
    ("A1: I'm a first timer! Hello everyone 👋 #LeadingQI", 1),
    ("A2. Role modelling the behaviours you want to see", 2),
    ("A2) By being visible on the wards, not just in the boardroom", 2),
    ("a2 - walk the talk #QIHour", 2),
    ("A2 – leaders go first so others feel safe to follow", 2),
    ("A2 — psychological safety starts at the top", 2),
    ("Q.2 leaders need to show it is safe to try things", 2),
    ("A.3 no time to think, only to firefight", 3),
    ("A 2: They set the direction and create alignment", 2),
    ("A 4 – being present at huddles", 4),
    ("Re Q2: it shows that improvement is everyone's job", 2),
    ("RE: A2 couldn't agree more with @HelenBevan", 2),
    ("Re:A4 curiosity over judgement", 4),
    ("#A2 Lead by example #QIHour", 2),
    ("Ans 2: consistency, consistency, consistency", 2),
    ("Answer 2: Trust your teams", 2),
    ("Answer2 - trust", 2),
    ("Question 3: fear of failure", 3),
    ("A2/ a thread on what good looks like 🧵", 2),
    ("(A2) visible leadership matters", 2),
    ("[A2] visible leadership matters", 2),
    ("(A 2) visible leadership matters", 2),
    ("A1 & A2: both! First chat and leaders matter", 1),
    ("A1 &amp; A2: first time here and yes, they matter", 1),
    ("A3- Poor communication of the why", 3),
    ("A10: last one, thanks all", 10),
    ("a2: lower case works too", 2),
    ("Q2/A2 leaders show the way", 2),
    ("A2\nLeaders light the path", 2),
    ("A2", 2),
    ("A2's the hardest one tonight", 2),
    ("@WarwickBSchool @HelenBevan A3 Lack of time and headspace", 3),
    (".@HelenBevan A4: seeing the CEO at the Gemba", 4),
    ("#QIHour #LeadingQI A5 Start small, celebrate often", 5),
    ("@QIHour #QIHour #A5 start small", 5),
    ("🙋‍♀️ A1 first one for me!", 1),
    ("👉A6: keep learning and stay curious", 6),
    ("   A2 leading spaces are fine", 2),
    ("— A2: a dash before the marker", 2),
    ('"A2: quoted from my notes"', 2),
    ("&gt; A2 as a quote block", 2),
    ("A2… leaders set the weather", 2),
]

NOT_LEADING = [
    "A1c levels dropped after the project #QIHour",
    "A2019 audit showed the same thing",
    "A 5 minute walk round the ward says more than any report",
    "A 2.5 hour meeting is not improvement",
    "A 2-day course won't change a culture",
    "A 2/3 majority said yes",
    "A 2:30pm start suits me",
    "A lot of leaders say the right thing",
    "A+ for the panel tonight",
    "Q&A with the panel tonight #QIHour",
    "Quality improvement is a team sport",
    "Area 2 of the hospital",
    "Answer 2 is clearly the hardest",
    "Q 2 is my favourite so far",
    "Looking forward to #QIHour tonight",
    "Great point! As we said in Q3, leaders go first",
    "My answer to Q2: leaders go first",
    "#Q2chat is trending",
    "@A2team thanks for joining",
    "A2B corridor is where we started",
    "A0 no such question",
    "RT @WarwickBSchool: Q2. Why is it important…",
    "Re: my last tweet, see thread",
    "Qatar A2",
    "",
    "   ",
    "🙌🙌🙌",
]

TRAILING = [
    ("Leaders set the direction A2", 2),
    ("Leaders set the direction A2 #QIHour", 2),
    ("Leaders set the direction (A2)", 2),
    ("Leaders set the direction [A2]", 2),
    ("Leaders set the direction #A2", 2),
    ("Leaders set the direction - A2", 2),
    ("Which is why I loved this question Q2", 2),
    ("Leaders go first so others can follow #LeadingQI #A2 #QIHour", 2),
    ("Visible leadership on the wards A3 https://t.co/AbC123xyz", 3),
    ("Visible leadership A3 #QIHour https://t.co/x1 https://t.co/y2", 3),
    ("Time to think A4 @WarwickBSchool @HelenBevan", 4),
    ("Start small A5!", 5),
    ("Start small A5 🙌🏽", 5),
    ("Celebrate the small wins A1.", 1),
    ("Role modelling (A2) #QIHour #LeadingQI https://t.co/pic", 2),
    ("lower case a6", 6),
    ("Trust A.3", 3),
    ("Trust\nA2\n", 2),
    ("Trust A2https://t.co/x", 2),
    ("Trust. A2 :)", 2),
]

NOT_TRAILING = [
    "I need A2 levels",
    "Great chat tonight #QIHour",
    "Passed my A1c test",
    "See the Q3 report https://t.co/x",
    "The plan is x-A2",
    "Mention @A2 please",
    "Paid in 2019",
    "Call A123",
    "It is like vitaminA2",
    "Thanks all #QIHourA2",
    "I give it a 2",
    "https://t.co/A2",
    "",
    "🙌",
]

QUESTION_POSTS = [
    ("Q2. Why is it important that leaders lead from the front?", 2),
    ("Q2: Why is it important that leaders lead from the front?", 2),
    ("Q 2 - Why is it important that leaders lead from the front?", 2),
    ("Question 2: Why is it important that leaders lead from the front?", 2),
    ("Q.2 Why is it important that leaders lead from the front?", 2),
    ("Q1. Let's start with a poll!", 1),
    ("Q3 Poll: When an organisation is implementing whole-system QI…", 3),
    ("#QIHour Q4: When have you seen effective leadership?", 4),
    ("🚨 Q5: What advice would you give to senior leaders?", 5),
    ("q6 - last question of the night! #LeadingQI", 6),
    ("@HelenBevan Q2: over to you all", 2),
    ("(Q2) Why does it matter?", 2),
]

NOT_QUESTION_POSTS = [
    "A2: as a host I'd say leaders go first",
    "Welcome to tonight's #QIHour tweetchat! Introduce yourselves 👋",
    "Quick reminder: Q2 is coming up",
    "Q&A after the chat",
    "Re Q2: thanks for all the brilliant answers",
    "Answer 2: nope",
    "Question 2 coming up in 5 minutes",
    "Quality improvement is for everyone",
]


@pytest.mark.parametrize(("text", "number"), LEADING)
def test_leading_marker(text: str, number: int) -> None:
    assert leading_marker(text) == number


@pytest.mark.parametrize("text", NOT_LEADING)
def test_not_a_leading_marker(text: str) -> None:
    assert leading_marker(text) is None


@pytest.mark.parametrize(("text", "number"), TRAILING)
def test_trailing_marker(text: str, number: int) -> None:
    assert trailing_marker(text) == number


@pytest.mark.parametrize("text", NOT_TRAILING)
def test_not_a_trailing_marker(text: str) -> None:
    assert trailing_marker(text) is None


@pytest.mark.parametrize(("text", "number"), QUESTION_POSTS)
def test_question_marker(text: str, number: int) -> None:
    assert question_marker(text) == number


@pytest.mark.parametrize("text", NOT_QUESTION_POSTS)
def test_not_a_question_marker(text: str) -> None:
    assert question_marker(text) is None


# Texts made of what the leading scans look at: things they skip, a label, a number and a
# separator, or not, then more of the same, in any order.
_PIECES = st.sampled_from(
    ["Q", "q", "A", "a", "Question", "ans", "Answer", "Re ", "re:", "RE: ", "#", "(", "[", ".",
     ":", "-", " ", "  ", "2", "12", "0", "@amy ", "#QIHour ", "&amp;", "\U0001f600", "word",
     "2.5", "/", ")", "\n"]
)  # fmt: skip
MARKER_TEXTS = st.tuples(
    st.lists(
        st.sampled_from(["", " ", "@amy ", "#QIHour ", "&amp; ", "\U0001f600 ", ". "]), max_size=3
    ),
    st.sampled_from(["", "Re ", "re: ", "#", "(", "[", "Re: #"]),
    st.sampled_from(["Q", "q", "A", "Question", "ans", "Answer", "word", ""]),
    st.sampled_from(["", ".", " ", "  "]),
    st.sampled_from(["2", "12", "0", "7", "2.5", "123", ""]),
    st.sampled_from(["", ":", ".", ")", "]", " -", " - ", "/", " /x", "word", " ", ": Q3:"]),
    st.lists(_PIECES, max_size=5),
).map(lambda p: "".join(p[0]) + "".join(p[1:6]) + "".join(p[6]))


@settings(max_examples=2000, deadline=None)
@given(text=MARKER_TEXTS)
def test_a_question_marker_is_always_a_leading_marker_too(text: str) -> None:
    # TagInput.from_text looks for a question marker only where a leading marker was found.
    assert question_marker(text) is None or leading_marker(text) is not None


def test_leading_marker_is_not_overridden_by_a_later_one() -> None:
    text = "A2 as we said in Q3, leaders go first A4"
    assert leading_marker(text) == 2
    assert tagger_with(*QUESTIONS, post("p", text)).tag("p") == Tag(2, "prefix")


def test_from_text_keeps_markers_not_text() -> None:
    p = post("p", "A1 & A2: both #A3")
    assert (p.lead, p.trail, p.qmark) == (1, 3, None)
    assert not hasattr(p, "text")


def test_naive_datetimes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="post p created_at"):
        TagInput(
            id="p",
            author="a",
            created_at=datetime(2023, 3, 28, 18),
            kind="original",
            in_reply_to_id=None,
            quoted_id=None,
            lead=None,
            trail=None,
            qmark=None,
        )
    with pytest.raises(ValueError, match="chat end"):
        ChatPlan(hosts=frozenset(), planned={}, start=at(0), end=datetime(2023, 3, 28, 19))


# --------------------------------------------------------------------------------------------------
# The rules, in order
# --------------------------------------------------------------------------------------------------


def test_rule_1_prefix_wins_over_everything_after_it() -> None:
    tagger = tagger_with(
        *QUESTIONS, post("p", "A1 leaders go first A3", reply_to="q2", quote="q3", minute=25)
    )
    assert tagger.tag("p") == Tag(1, "prefix")


def test_rule_2_suffix_wins_over_reply_quote_and_window() -> None:
    tagger = tagger_with(*QUESTIONS, post("p", "Leaders go first A1", reply_to="q2", minute=25))
    assert tagger.tag("p") == Tag(1, "suffix")


def test_rule_3_reply_to_question_post() -> None:
    tagger = tagger_with(*QUESTIONS, post("p", "Because they set the weather", reply_to="q2"))
    assert tagger.tag("p") == Tag(2, "reply")


def test_rule_3_reply_chain_three_deep_inherits() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("a", "A2 they set the direction", minute=12),
        post("b", "So true!", author="bob", reply_to="a", minute=25),
        post("c", "And they have to mean it", reply_to="b", minute=26),
        post("d", "Agreed", author="carol", reply_to="c", minute=27),
    )
    assert tagger.tag("a") == Tag(2, "prefix")
    assert [tagger.tag(x) for x in "bcd"] == [Tag(2, "reply")] * 3


def test_reply_to_a_reply_collected_before_its_parent_is_retagged() -> None:
    tagger = tagger_with(*QUESTIONS)
    early = tagger.add(
        [
            post("c", "And they have to mean it", reply_to="b", minute=26),
            post("d", "Agreed", author="carol", reply_to="c", minute=27),
        ]
    )
    assert early == {"c": Tag(3, "window"), "d": Tag(3, "reply")}
    assert tagger.add([post("b", "So true!", author="bob", reply_to="a", minute=25)]) == {
        "b": Tag(3, "window"),
        "c": Tag(3, "reply"),
    }
    changed = tagger.add([post("a", "A2 they set the direction", minute=12)])
    assert changed == {
        "a": Tag(2, "prefix"),
        "b": Tag(2, "reply"),
        "c": Tag(2, "reply"),
        "d": Tag(2, "reply"),
    }


def test_rule_4_quote_of_question_post() -> None:
    tagger = tagger_with(*QUESTIONS, post("p", "This one is hard!", quote="q1", minute=25))
    assert tagger.tag("p") == Tag(1, "quote")


def test_quote_of_an_ordinary_post_falls_to_the_window() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("a", "A1 yes, my first", minute=5),
        post("p", "Welcome!", quote="a", minute=25),
    )
    assert tagger.tag("p") == Tag(3, "window")


def test_reply_before_quote() -> None:
    tagger = tagger_with(*QUESTIONS, post("p", "Yes", kind="quote", reply_to="q1", quote="q2"))
    assert tagger.tag("p") == Tag(1, "reply")


@pytest.mark.parametrize(
    ("minute", "expected"),
    [
        (-5, Tag(None, None)),  # before the chat
        (1, Tag(None, None)),  # in the chat, before the first question
        (2, Tag(1, "window")),  # the question post's own second
        (9.9, Tag(1, "window")),
        (10, Tag(2, "window")),
        (45, Tag(3, "window")),
        (59.9, Tag(3, "window")),
        (60, Tag(None, None)),  # the chat window is [start, end)
        (90, Tag(None, None)),
    ],
)
def test_rule_5_window(minute: float, expected: Tag) -> None:
    assert tagger_with(*QUESTIONS, post("p", minute=minute)).tag("p") == expected


def test_window_uses_planned_times_until_the_question_post_is_seen() -> None:
    tagger = tagger_with(post("p", minute=15), chat=plan({1: at(2), 2: at(12), 3: None}))
    assert tagger.tag("p") == Tag(2, "window")
    assert tagger.question_starts() == {1: at(2), 2: at(12)}
    # The host posted Q2 late: the question post's time wins, and earlier posts move to Q1.
    changed = tagger.add([post("q2", "Q2: Why?", author=HOST, minute=16)])
    assert changed == {"q2": Tag(2, "prefix"), "p": Tag(1, "window")}
    assert tagger.question_starts() == {1: at(2), 2: at(16)}
    assert tagger.question_posts() == {2: ("q2", at(16))}


def test_host_posts_are_not_answers() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("welcome", "Welcome to #QIHour! Introduce yourselves", author=HOST, minute=0),
        post("poll", "A2 is coming up, first a poll", author=HOST, minute=12),
        post("thanks", "Thank you all for joining #QIHour", author="warwickbschool", minute=58),
    )
    assert tagger.tag("welcome") == Tag(None, None)
    assert tagger.tag("poll") == Tag(None, None)
    assert tagger.tag("thanks") == Tag(None, None)
    assert tagger.tag("q2") == Tag(2, "prefix")


def test_host_reply_in_a_thread_passes_the_question_on() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("a", "A2 lead by example", minute=12),
        post("h", "Thanks Alice, great point!", author=HOST, reply_to="a", minute=30),
        post("b", "@WarwickBSchool @alice and by listening", author="bob", reply_to="h", minute=31),
    )
    assert tagger.tag("h") == Tag(None, None)
    assert tagger.tag("b") == Tag(2, "reply")


def test_host_quote_of_a_question_post_passes_the_question_on() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("h", "Still time to answer this one!", author=HOST, quote="q1", minute=30),
        post("b", "Yes, first time here", author="bob", reply_to="h", minute=31),
    )
    assert tagger.tag("h") == Tag(None, None)
    assert tagger.tag("b") == Tag(1, "reply")


def test_threaded_question_posts_carry_their_own_number() -> None:
    q2 = post("q2", "Q2. Why does it matter?", author=HOST, reply_to="q1", minute=10)
    tagger = tagger_with(Q1, q2, post("p", "Because", reply_to="q2", minute=11))
    assert tagger.tag("q2") == Tag(2, "prefix")
    assert tagger.tag("p") == Tag(2, "reply")


def test_earliest_host_question_post_counts() -> None:
    again = post("q2b", "Q2: in case you missed it…", author=HOST, minute=14)
    tagger = tagger_with(again, *QUESTIONS)
    assert tagger.question_posts()[2] == ("q2", at(10))
    assert tagger.question_starts()[2] == at(10)
    assert tagger.tag("q2b") == Tag(2, "prefix")


def test_hosts_compare_case_insensitively() -> None:
    tagger = tagger_with(post("q", "Q1: hello", author="WARWICKBSCHOOL", minute=5))
    assert tagger.tag("q") == Tag(1, "prefix")
    assert tagger.question_posts() == {1: ("q", at(5))}


def test_retweets_are_not_answers_nor_parents() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("rt", "RT @alice: A2 lead by example", author="bob", kind="retweet", minute=12),
        post("rtq", "Q3: …", author=HOST, kind="retweet", minute=5),
        post("p", "Reply to a retweet", reply_to="rt", minute=30),
    )
    assert tagger.tag("rt") == Tag(None, None)
    assert tagger.tag("rtq") == Tag(None, None)
    assert tagger.question_posts()[3] == ("q3", at(20))
    assert tagger.tag("p") == Tag(3, "window")


def test_missing_parent_does_not_exist_for_the_tagger() -> None:
    tagger = tagger_with(*QUESTIONS, post("p", "Indeed", reply_to="never-collected", minute=12))
    assert tagger.tag("p") == Tag(2, "window")


# ---- valid numbers -------------------------------------------------------------------------------


def test_invalid_number_falls_through_to_the_next_rule() -> None:
    chat = plan({1: None, 2: None, 3: None})
    tagger = tagger_with(
        *QUESTIONS,
        post("lead", "A7: not a question tonight", minute=12),
        post("trail", "A7: but this is A1", minute=12),
        post("reply", "A9 yes", reply_to="q1", minute=12),
        chat=chat,
    )
    assert tagger.tag("lead") == Tag(2, "window")
    assert tagger.tag("trail") == Tag(1, "suffix")
    assert tagger.tag("reply") == Tag(1, "reply")
    assert tagger.valid_numbers() == frozenset({1, 2, 3})


def test_host_question_post_makes_its_number_valid() -> None:
    chat = plan({1: None, 2: None, 3: None})
    tagger = tagger_with(*QUESTIONS, post("p", "A4 bonus answer", minute=40), chat=chat)
    assert tagger.tag("p") == Tag(3, "window")
    changed = tagger.add([post("q4", "Q4: bonus question!", author=HOST, minute=35)])
    assert changed == {"q4": Tag(4, "prefix"), "p": Tag(4, "prefix")}
    assert tagger.valid_numbers() == frozenset({1, 2, 3, 4})


def test_no_configured_questions() -> None:
    chat = plan({})
    tagger = tagger_with(
        post("early", "Hello!", minute=1),
        post("a15", "A15 there were fifteen questions?", minute=3),
        post("a25", "A25 too many", minute=3),
        chat=chat,
    )
    assert tagger.valid_numbers() is None
    assert tagger.question_starts() == {}
    assert tagger.tag("early") == Tag(None, None)
    assert tagger.tag("a15") == Tag(15, "prefix")
    assert tagger.tag("a25") == Tag(None, None)
    tagger.add([post("q25", "Q25: the marathon question", author=HOST, minute=2)])
    assert tagger.valid_numbers() == frozenset(range(1, 21)) | {25}
    assert tagger.tag("a25") == Tag(25, "prefix")
    assert tagger.tag("early") == Tag(None, None)
    assert tagger.question_starts() == {25: at(2)}


# ---- manual tags ---------------------------------------------------------------------------------


def test_manual_tag_wins_and_is_inherited_then_cleared() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("a", "A2 lead by example", minute=12),
        post("b", "So true", author="bob", reply_to="a", minute=13),
        post("c", "A3 my own answer", author="carol", reply_to="b", minute=22),
    )
    assert tagger.set_manual("a", 3) == {"a": Tag(3, "manual"), "b": Tag(3, "reply")}
    assert tagger.tag("c") == Tag(3, "prefix")
    assert tagger.set_manual("a", 3) == {}
    assert tagger.clear_manual("a") == {"a": Tag(2, "prefix"), "b": Tag(2, "reply")}
    assert tagger.clear_manual("a") == {}


def test_manual_no_question() -> None:
    tagger = tagger_with(
        *QUESTIONS,
        post("a", "A2 lead by example", minute=12),
        post("b", "So true", author="bob", reply_to="a", minute=25),
    )
    changed = tagger.set_manual("a", None)
    # "No question" is not passed on: the reply falls through to the later rules.
    assert changed == {"a": Tag(None, "manual"), "b": Tag(3, "window")}


def test_manual_tag_on_a_host_post_and_before_the_post_arrives() -> None:
    tagger = tagger_with(*QUESTIONS)
    assert tagger.set_manual("h", 1) == {}
    assert tagger.add([post("h", "Thanks all!", author=HOST, minute=30)]) == {"h": Tag(1, "manual")}


# ---- arrival order and structure -----------------------------------------------------------------


def test_question_post_arriving_late_retags_window_and_quotes() -> None:
    tagger = tagger_with(Q1, post("p", minute=12), post("quote", "Hard one", quote="q2", minute=30))
    assert tagger.tag("p") == Tag(1, "window")
    assert tagger.tag("quote") == Tag(1, "window")
    changed = tagger.add([Q2])
    assert changed == {"q2": Tag(2, "prefix"), "p": Tag(2, "window"), "quote": Tag(2, "quote")}


def test_duplicate_delivery_changes_nothing() -> None:
    a = post("a", "A2 lead by example", minute=12)
    tagger = tagger_with(*QUESTIONS, a)
    assert tagger.add([a, Q2]) == {}
    assert len(tagger) == 4


def test_new_untagged_post_is_reported() -> None:
    tagger = tagger_with(*QUESTIONS)
    assert tagger.add([post("p", minute=-10)]) == {"p": Tag(None, None)}


def test_readding_a_post_with_another_parent_moves_it() -> None:
    tagger = tagger_with(*QUESTIONS, post("c", "yes", reply_to="q1", minute=30))
    assert tagger.tag("c") == Tag(1, "reply")
    assert tagger.add([post("c", "yes", reply_to="q2", minute=30)]) == {"c": Tag(2, "reply")}
    # q1 no longer has the child: a change on q1's side must not touch it.
    assert tagger.set_manual("q1", 5) == {"q1": Tag(5, "manual")}


def test_unknown_post() -> None:
    tagger = tagger_with(*QUESTIONS)
    assert tagger.tag("nope") == Tag(None, None)
    assert len(tagger) == 3
    assert dict(tagger.tags()) == {q.id: Tag(int(q.id[1]), "prefix") for q in QUESTIONS}


def test_reply_cycle_terminates_and_is_order_free() -> None:
    # Malformed data: a replies to b, b replies to a; c hangs off the cycle.
    posts = [
        post("a", "yes", reply_to="b", minute=12),
        post("b", "A1 no", author="bob", reply_to="a", minute=25),
        post("c", "maybe", author="carol", reply_to="b", minute=26),
        post("self", "me", reply_to="self", minute=45),
    ]
    one = tagger_with(*QUESTIONS, *posts)
    other = tagger_with(*QUESTIONS)
    for p in reversed(posts):
        other.add([p])
    assert dict(one.tags()) == dict(other.tags())
    assert one.tag("a") == Tag(2, "window")  # its parent link is ignored, not followed
    assert one.tag("b") == Tag(1, "prefix")
    assert one.tag("c") == Tag(1, "reply")
    assert one.tag("self") == Tag(3, "window")


def test_deep_reply_chain_needs_no_recursion() -> None:
    depth = 5000
    chain = [post("n0", "A2 root", minute=12)] + [
        post(f"n{i}", "and", reply_to=f"n{i - 1}", minute=30) for i in range(1, depth)
    ]
    tagger = tagger_with(*QUESTIONS, *reversed(chain[1:]))
    assert tagger.tag("n1") == Tag(3, "window")  # its parent is not collected yet
    assert tagger.tag(f"n{depth - 1}") == Tag(3, "reply")
    changed = tagger.add([chain[0]])
    assert len(changed) == depth
    assert tagger.tag(f"n{depth - 1}") == Tag(2, "reply")


def test_adding_one_reply_to_a_large_tagger_recomputes_only_that_post() -> None:
    posts = [*QUESTIONS]
    for i in range(50_000):
        posts.append(
            TagInput(
                id=f"p{i}",
                author=f"user{i % 700}",
                created_at=at(2 + i * 57 / 50_000),
                kind="reply" if i % 3 else "original",
                in_reply_to_id=f"p{i // 2}" if i % 3 else None,
                quoted_id=None,
                lead=(i % 4) or None,
                trail=None,
                qmark=None,
            )
        )
    tagger = tagger_with(*posts)
    assert len(tagger) == 50_003
    before = tagger._computed
    changed = tagger.add([post("new", "Exactly", author="zoe", reply_to="p49999", minute=50)])
    assert tagger.tag("p49999") == Tag(3, "prefix")
    assert changed == {"new": Tag(3, "reply")}
    assert tagger._computed - before == 1
    # A post whose replies arrived first recomputes itself and those replies, nothing more.
    tagger.add([post("orphan-reply", "yes", reply_to="late", minute=50)])
    before = tagger._computed
    changed = tagger.add([post("late", "A1 late but here", reply_to="p7", minute=50)])
    assert changed == {"late": Tag(1, "prefix"), "orphan-reply": Tag(1, "reply")}
    assert tagger._computed - before == 2


def test_a_late_question_post_recomputes_only_what_it_moves() -> None:
    # 30,000 answers spread over the hour, no planned times: until Q4's post arrives, question 3
    # runs to the end of the chat.
    posts = [*QUESTIONS]
    for i in range(30_000):
        minute = 15 + i * 44 / 30_000
        posts.append(post(f"p{i}", "Walk the talk", minute=minute))
    tagger = tagger_with(*posts)
    assert tagger.tag("p29999") == Tag(3, "window")
    tagger.add([post("quote", "So true", minute=50, quote="q4"), post("r", "A3 still", minute=50)])
    before = tagger._computed
    q4 = post("q4", "Q4. What would you stop doing tomorrow?", author=HOST, minute=40)
    changed = tagger.add([q4])
    # Its own post, the answers after minute 40 (now question 4's), and the post quoting it.
    after = {f"p{i}" for i in range(30_000) if 15 + i * 44 / 30_000 >= 40}
    assert tagger._computed - before == 1 + len(after) + 1 + 1  # and "r", after minute 40
    assert changed == {
        "q4": Tag(4, "prefix"),
        "quote": Tag(4, "quote"),
        **{pid: Tag(4, "window") for pid in after},
    }
    assert tagger.tag("r") == Tag(3, "prefix")  # recomputed, unchanged
    # A question post with a number outside the planned ones makes markers of it valid: only
    # the posts naming it are recomputed, wherever they are in the chat.
    planned = {1: at(2), 2: at(10), 3: at(20)}
    tagger = tagger_with(*posts, post("seven", "A7 yes"), post("x", "Yes (A7)"), chat=plan(planned))
    assert tagger.tag("seven") == Tag(3, "window")
    before = tagger._computed
    changed = tagger.add([post("q7", "Q7: Bonus question!", author=HOST, minute=70)])
    assert changed == {"q7": Tag(7, "prefix"), "seven": Tag(7, "prefix"), "x": Tag(7, "suffix")}
    assert tagger._computed - before == 3


# --------------------------------------------------------------------------------------------------
# Order independence (hypothesis)
# --------------------------------------------------------------------------------------------------

AUTHORS = ["Host", "alice", "bob", "carol"]
KINDS = ["original", "reply", "quote", "retweet"]


@st.composite
def chats(draw: st.DrawFn) -> tuple[ChatPlan, list[TagInput], dict[str, int | None]]:
    """A small chat: a host, question posts, replies, quotes and chains pointing at each other
    (forwards, backwards, at themselves and at posts never collected), and some manual tags."""
    size = draw(st.integers(1, 24))
    ids = [f"p{i}" for i in range(size)]
    targets = st.none() | st.sampled_from([*ids, "gone1", "gone2"])
    small = st.none() | st.integers(1, 8)
    posts = [
        TagInput(
            id=pid,
            author=draw(st.sampled_from(AUTHORS)),
            created_at=at(draw(st.integers(-10, 70))),
            kind=draw(st.sampled_from(KINDS)),
            in_reply_to_id=draw(targets),
            quoted_id=draw(targets),
            lead=draw(small),
            trail=draw(small),
            qmark=draw(small),
        )
        for pid in ids
    ]
    configured = draw(st.sets(st.integers(1, 6), max_size=5))
    planned = {n: draw(st.none() | st.integers(-5, 65).map(at)) for n in configured}
    manual = draw(st.dictionaries(st.sampled_from([*ids, "gone1"]), small, max_size=3))
    chat = ChatPlan(hosts=frozenset({"host"}), planned=planned, start=at(0), end=at(60))
    return chat, posts, manual


def oracle(chat: ChatPlan, posts: list[TagInput], manual: dict[str, int | None]) -> dict[str, Tag]:
    """The rules written as directly as possible, on the whole post set at once."""
    by_id = {p.id: p for p in posts}

    def is_host(p: TagInput) -> bool:
        return p.author.lower() in chat.hosts

    def question_number(p: TagInput | None) -> int | None:
        ok = p is not None and is_host(p) and p.kind != "retweet"
        return p.qmark if p is not None and ok else None

    question_posts = [p for p in posts if question_number(p) is not None]
    valid = set(chat.planned) or set(range(1, 21))
    valid |= {p.qmark for p in question_posts if p.qmark is not None}
    starts: dict[int, datetime] = {}
    for n in valid:
        seen = [p.created_at for p in question_posts if p.qmark == n]
        planned = chat.planned.get(n)
        if seen:
            starts[n] = min(seen)
        elif planned is not None:
            starts[n] = planned
    ordered = sorted(starts.items(), key=lambda kv: (kv[1], kv[0]))

    def window(t: datetime) -> int | None:
        current = None
        for n, start in ordered:
            if start <= t:
                current = n
        return None if t >= chat.end else current

    def on_cycle(pid: str) -> bool:
        node = by_id[pid].in_reply_to_id
        for _ in range(len(by_id)):
            if node is None or node not in by_id:
                return False
            if node == pid:
                return True
            node = by_id[node].in_reply_to_id
        return False

    results: dict[str, tuple[Tag, int | None]] = {}

    def resolve(pid: str) -> tuple[Tag, int | None]:
        if pid in results:
            return results[pid]
        p = by_id[pid]
        parent_id = None if on_cycle(pid) else p.in_reply_to_id
        parent = None
        if parent_id in by_id and by_id[parent_id].kind != "retweet":
            parent = resolve(parent_id)[1]
        quoted = question_number(by_id.get(p.quoted_id or ""))
        result: tuple[Tag, int | None]
        if pid in manual:
            q = manual[pid]
            result = Tag(q, "manual"), None if p.kind == "retweet" else q
        elif p.kind == "retweet":
            result = Tag(None, None), None
        elif is_host(p):
            if p.qmark is not None:
                result = Tag(p.qmark, "prefix"), p.qmark
            else:
                result = Tag(None, None), parent if parent is not None else quoted
        elif p.lead in valid:
            result = Tag(p.lead, "prefix"), p.lead
        elif p.trail in valid:
            result = Tag(p.trail, "suffix"), p.trail
        elif parent is not None:
            result = Tag(parent, "reply"), parent
        elif quoted is not None:
            result = Tag(quoted, "quote"), quoted
        else:
            w = window(p.created_at)
            result = (Tag(w, "window") if w is not None else Tag(None, None)), w
        results[pid] = result
        return result

    return {pid: resolve(pid)[0] for pid in by_id}


@settings(max_examples=300, deadline=None)
@given(chat=chats(), data=st.data())
def test_tags_do_not_depend_on_arrival_order(
    chat: tuple[ChatPlan, list[TagInput], dict[str, int | None]], data: st.DataObject
) -> None:
    plan_, posts, manual = chat
    reference = Tagger(plan_)
    for pid, question in manual.items():
        reference.set_manual(pid, question)
    reference.add(posts)
    expected = dict(reference.tags())
    assert expected == oracle(plan_, posts, manual)

    # The same posts shuffled, some delivered twice, in batches, with the manual tags set at
    # random moments in between.
    shuffled = data.draw(st.permutations(posts))
    repeats = data.draw(st.lists(st.sampled_from(posts), max_size=4))
    stream = shuffled + repeats
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    moments = {pid: data.draw(st.integers(0, len(batches))) for pid in manual}

    tagger = Tagger(plan_)
    seen: dict[str, Tag] = {}
    for i in range(len(batches) + 1):
        for pid, moment in moments.items():
            if moment == i:
                seen.update(tagger.set_manual(pid, manual[pid]))
        if i < len(batches):
            seen.update(tagger.add(batches[i]))
    assert dict(tagger.tags()) == expected
    assert seen == expected
    assert len(tagger) == len(posts)
