"""The hand-made chat (tests/fixtures/qi-chat.jsonl) imported through the CLI.

Every figure of `tweetchat stats qi-test --json` and the question tag of every post that matters are
literal values worked out by hand from the groups in tests/fixtures/make_qi_chat.py (the comments
show the arithmetic, naming the generator's post keys). Nothing here calls the generator or the
product's code: if a number is wrong, re-work it by hand from the generator.

Window chat = [18:00:00, 19:00:00) UTC on 2023-03-28. Composition of the file (343 distinct posts,
344 entries: t1c is on two pages):

    kind        before  window  after   all
    original        4     135      4    143
    reply           1      27      4     32
    quote           0       5      1      6
    retweet         5     153      4    162
    total          10     320     13    343

before  (G0): originals promo, early_val, early_ward7, early_sam; reply promo_reply; retweets
              4 of promo + 1 of the context post ctx.
window  originals: G1 welcome 1 + panel hellos 5 + participant hellos 8 = 14; host question posts
              q1..q6 6 + q4_again 1 + thanks 1 = 8; Q1 7 + bulk 8 = 15; Q2 16 + bulk 10 = 26;
              Q3 9 + bulk 10 = 19; Q4 8 + bulk 10 = 18; Q5 8 + bulk 10 = 18; Q6 9 + bulk 8 = 17;
              14 + 8 + 15 + 26 + 19 + 18 + 18 + 17 = 135.
          replies: G1 2 (welcome_reply_raj, welcome_reply_sam); Q1 3 (r1_tom, p1_kpo_sam,
              p1_helen_leeds); Q2 9 (t1b, t1c, t1d, r2_mira, r2_estates_a3, p2_kpo_nicola,
              p2_kpo_amy, p2_nicola_al, h2_host_raj); Q3 5 (p3_helen_wes, p3_nicola_cath, t2b, t2c,
              t2d); Q4 3 (r4_kerry, p4_sutcliffe_kat, h4_host_patient); Q5 2 (p5_jimmy_ruth,
              p5_sutcliffe_fi); Q6 3 (t3b, w6_kat_reply_thanks, p6_helen_sanjay) = 27.
          quotes: w2_nia_quote_ctx, w3_cj_quote_helen, qt3_liz, a4_cj_reply_quote (a reply that
              quotes is a quote), qt5_grace = 5.
          retweets: welcome 4+3, q1 5+8, q2 3+12, a2_helen 24, a2_jimmy 10, a2_nicola 8, q3 2+6,
              a3_grace 4, q4 2+8, q4_again 1, w4_icb 3, a4_kat 10, a4_helen 5, q5 2+6, a5_ian 9,
              a5_ruth 4, q6 2+6, a6_kpo 4, thanks 2
              = 7+13+15+24+10+8+8+4+10+1+3+10+5+8+9+4+8+4+2 = 153.
after   (G8, from 19:00:00): originals after_leeds (19:00:00 exactly: end is exclusive), wrap,
              late_ed_a6, after_gpp; replies after_maya_reply_thanks, t3c, p6_sutcliffe_rob, t3d;
              retweets 2 of a2_helen + 2 of wrap; quote qt2_data_next_day.
context: ctx (QIcommunity_UK) is only in includes.tweets: in no figure and not exported.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CliRunnerFn

FIXTURE = Path(__file__).parent / "fixtures" / "qi-chat.jsonl"
SLUG = "qi-test"
HOST = "WarwickBSchool"
PANEL = ["HelenBevan", "DrNicolaBurgess", "KPOteam_SASH", "jimmy_parvin", "Sutcliffe1987"]
# The run of show, as the organisers would type it: planned times in Europe/London (BST, UTC+1).
QUESTIONS = [
    ("19:05", "Let's start with a poll!"),
    (
        "19:12",
        "Why is it important that leaders lead from the front and light the path for others "
        "in quality improvement?",
    ),
    (
        "19:21",
        "When have you seen or experienced poor leadership being a barrier to quality "
        "improvement? What happened?",
    ),
    (
        "19:30",
        "When have you seen or experienced effective leadership of quality improvement? "
        "What does effective leadership of improvement look like or feel like?",
    ),
    (
        "19:40",
        "What advice would you give to senior leaders of organisations wanting to develop an "
        "organisation or system-wide approach to quality improvement?",
    ),
    (
        "19:50",
        "Last question of the night: Based on this tweetchat, what will or could you do as a "
        "leader to light the path and encourage others to embrace a continuous improvement "
        "culture?",
    ),
]

# Ids of the posts the figures name (from the fixture file; key in make_qi_chat.py after #).
ID = {
    "q1": "1640777036260933632",
    "q2": "1640778823044780032",
    "q3": "1640781058332418048",
    "q4": "1640783332419153920",
    "q5": "1640785837181497344",
    "promo": "1640322777972715520",
    "wrap": "1640793377006682112",
    "a1_leeds": "1640777314589253632",
    "a1_jo": "1640777648963497984",
    "r1_tom": "1640777963637805056",
    "a2_helen": "1640779118382354432",
    "a2_jimmy": "1640780039870595072",
    "a2_nicola": "1640780165918334976",
    "a3_sutcliffe": "1640782514639241216",
    "a3_grace": "1640781761552408576",
    "a3_cath": "1640781969442299904",
    "a4_kat": "1640783730029907968",
    "a4_helen": "1640785577456304128",
    "a4_patient": "1640784066542157824",
    "w4_icb": "1640783814511669248",
    "a5_ian": "1640786206399426560",
    "a5_nicola": "1640787589743464448",
    "a5_ruth": "1640786375543488512",
    "a6_kpo": "1640788975785586688",
    "a6_bo": "1640790106370277376",
    "a6_sanjay": "1640789101271179264",
    "t1c": "1640781593215070208",  # the post on two pages
    "ctx": "1637740765250863104",  # context only (includes.tweets)
    "poll": "1640777035026333696",
}


def _create_and_import(cli: CliRunnerFn, *files: Path) -> None:
    args = ["chat", "create", SLUG, "--title", "Leaders show the way and light the path for others"]
    args += ["--hashtags", "#LeadingQI,#QIHour", "--host", HOST, "--panel", ",".join(PANEL)]
    args += ["--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z"]
    args += ["--series", "leadingqi-2023", "--source", "none", "--timezone", "Europe/London"]
    for planned, text in QUESTIONS:
        args += ["--question", f"{planned} {text}"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    result = cli("import", SLUG, *map(str, files))
    assert result.exit_code == 0, result.output


@pytest.fixture
def chat(cli: CliRunnerFn) -> CliRunnerFn:
    _create_and_import(cli, FIXTURE)
    return cli


def _stats(cli: CliRunnerFn, window: str) -> dict[str, Any]:
    result = cli("stats", SLUG, "--window", window, "--json")
    assert result.exit_code == 0, result.output
    stats: dict[str, Any] = json.loads(result.output)
    return stats


def _export(cli: CliRunnerFn) -> dict[str, Any]:
    out = Path("qi-test-export.json")  # the working directory is the test's tmp_path
    result = cli("export", SLUG, "--format", "json", "--output", str(out))
    assert result.exit_code == 0, result.output
    exported: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return exported


STATS_KEYS = {
    "chat", "window", "participants", "original_tweets", "retweets", "replies", "quotes",
    "questions", "top_tweets", "polls", "unanswered", "trending",
}  # fmt: skip

# Q1's poll on the host's Q1 post: 9 + 7 + 25 = 41 votes; shares rounded to 4 decimals.
POLLS = [
    {
        "id": ID["poll"],
        "options": [
            {"label": "Yes, my first!", "votes": 9, "share": 0.2195},  # 9/41 = 0.21951…
            {"label": "My second", "votes": 7, "share": 0.1707},  # 7/41 = 0.17073…
            {"label": "3 or more", "votes": 25, "share": 0.6098},  # 25/41 = 0.60975…
        ],
        "total": 41,
    }
]

# Top answers of each question (same in both windows: the after-window answers all have 0
# retweets). A post's retweets = max(public_metrics.retweet_count, collected retweets of it).
TOP = {
    # a1_leeds rc 3 likes 11; a1_jo rc 2 likes 8; r1_tom rc 2 likes 5 (tie on 2, likes decide);
    # next is a1_sam rc 1.
    1: [ID["a1_leeds"], ID["a1_jo"], ID["r1_tom"]],
    # a2_helen 179; a2_jimmy 36; a2_nicola 27; every other Q2 answer 0.
    2: [ID["a2_helen"], ID["a2_jimmy"], ID["a2_nicola"]],
    # a3_sutcliffe rc 5; a3_grace rc 2 but 4 collected retweets -> 4; a3_cath rc 3 (likes 30 do
    # not matter: 4 > 3). By retweet_count alone the order would be sutcliffe, cath, grace.
    3: [ID["a3_sutcliffe"], ID["a3_grace"], ID["a3_cath"]],
    # a4_kat 19; a4_helen 8; a4_patient 6; then a4_leon 4 and w4_icb 3 (rc 0, 3 collected RTs).
    4: [ID["a4_kat"], ID["a4_helen"], ID["a4_patient"]],
    # a5_ian 15; a5_nicola 9; a5_ruth 7.
    5: [ID["a5_ian"], ID["a5_nicola"], ID["a5_ruth"]],
    # a6_kpo 6; a6_bo 5; a6_sanjay 4.
    6: [ID["a6_kpo"], ID["a6_bo"], ID["a6_sanjay"]],
}


def _top(key: str, username: str, retweets: int, likes: int, impressions: int) -> dict[str, Any]:
    return {
        "id": ID[key],
        "username": username,
        "retweets": retweets,
        "likes": likes,
        "impressions": impressions,
    }


def _polls(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The polls, with the fields PRODUCT.md names (a poll may carry more, e.g. its status)."""
    return [
        {
            "id": poll["id"],
            "options": [
                {"label": o["label"], "votes": o["votes"], "share": o["share"]}
                for o in poll["options"]
            ],
            "total": poll["total"],
        }
        for poll in stats["polls"]
    ]


def _top_tweets(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """top_tweets without `text` (checked apart: present and non-empty)."""
    assert all(isinstance(t["text"], str) and t["text"] for t in stats["top_tweets"])
    fields = ("id", "username", "retweets", "likes", "impressions")
    return [{k: t[k] for k in fields} for t in stats["top_tweets"]]


def _questions(stats: dict[str, Any]) -> list[tuple[int, str, int, int, list[str]]]:
    return [
        (q["number"], q["text"], q["answers"], q["participants"], [p["id"] for p in q["top"]])
        for q in stats["questions"]
    ]


def test_stats_chat_window(chat: CliRunnerFn) -> None:
    stats = _stats(chat, "chat")
    assert set(stats) == STATS_KEYS
    assert stats["chat"] == SLUG
    assert stats["window"] == "chat"
    # host 1 + panel 5 + the 48 PARTICIPANTS (each with a non-retweet in the window) + the 4
    # RETWEET_ONLY accounts (retweets count) = 58. Not EarlyBird_Val (before only), LateLurker_Ed
    # (after only), QIcommunity_UK (context only) or McKinsey (only mentioned).
    assert stats["participants"] == 58
    # originals 135 + replies 27 + quotes 5 (see the module docstring) = 167.
    assert stats["original_tweets"] == 167
    assert stats["retweets"] == 153
    assert stats["replies"] == 27
    assert stats["quotes"] == 5
    # Answers in the window = 18 + 34 + 27 + 22 + 21 + 19 = 141 (below). Of these, by panel
    # accounts: Q1 p1_kpo_sam, p1_helen_leeds (2); Q2 a2_helen, a2_jimmy, a2_nicola,
    # p2_kpo_nicola, p2_kpo_amy, p2_nicola_al (6); Q3 a3_sutcliffe, p3_helen_wes, p3_nicola_cath,
    # t2d (4); Q4 a4_helen, p4_sutcliffe_kat (2); Q5 a5_nicola, p5_jimmy_ruth, p5_sutcliffe_fi (3);
    # Q6 a6_kpo, p6_helen_sanjay (2) = 19, leaving 122 by others. Answered by a host/panel reply:
    # a1_sam, a1_leeds, a2_amy, w2_al, a2_raj (host), a3_wes, a3_cath, t2c, a4_kat,
    # a4_patient (host), a5_ruth, w5_fi, a6_sanjay, a6_rob (Sutcliffe at 19:04, after the window:
    # any collected reply counts) = 14. Unanswered = 122 - 14 = 108.
    assert stats["unanswered"] == 108
    assert stats["trending"] == []
    assert _polls(stats) == POLLS
    assert _questions(stats) == [
        # Q1: hand-made a1_leeds, a1_sam, a1_ward7, a1_jo (prefix) + w1_pete, w1_gpp, w1_carer
        # (window) + r1_tom, p1_kpo_sam, p1_helen_leeds (reply) = 10 posts by 10 people, + bulk
        # b1_01..08 (8 other people) = 18 answers, 18 participants. (q1 itself: the question.)
        (1, QUESTIONS[0][1], 18, 18, TOP[1]),
        # Q2: a2_helen, a2_amy, a2_raj, a2_maya, a2_jo, a2_data, a2_ben, a2_tom, a2_jimmy,
        # a2_nicola, a2_helena, a2_cymru, a2_priya (13 prefix) + t1a (prefix) + w2_al,
        # w2_nia_quote_ctx (window) + s2_ed (suffix) + t1b, t1c, t1d, p2_kpo_nicola, p2_kpo_amy,
        # p2_nicola_al, r2_mira (reply) = 24; h2_host_raj is the host's (never an answer); t1c is on
        # two pages but counts once. + bulk b2_01..10 = 34 answers. People: 24 posts - 3 repeats
        # (MHnurseLeon t1a/t1c, KPOteam_SASH twice, DrNicolaBurgess a2_nicola/p2_nicola_al) = 21,
        # + 10 bulk = 31.
        (2, QUESTIONS[1][1], 34, 31, TOP[2]),
        # Q3: a3_wes, a3_grace, a3_cath, a3_schwartz, a3_amy, a3_sutcliffe, r2_estates_a3, t2a
        # (prefix) + w3_omar, w3_librarian, w3_cj_quote_helen (window) + qt3_liz (quote) +
        # p3_helen_wes, p3_nicola_cath, t2b, t2c, t2d (reply) = 17, + bulk b3_01..10 = 27 answers.
        # People: 17 - 1 (PaedsNurseEm t2a/t2c) = 16, + 10 = 26.
        (3, QUESTIONS[2][1], 27, 26, TOP[3]),
        # Q4: a4_kat, a4_patient, a4_script, a4_leon, a4_helen, a4_cj_reply_quote (prefix) +
        # s4_helena (suffix, posted in Q5's time) + w4_icb, w4_ash_mid_q3, w4_sanjay (window) +
        # r4_kerry, p4_sutcliffe_kat (reply) = 12 by 12 people (q4_again and h4_host_patient are
        # the host's), + bulk b4_01..10 = 22 answers, 22 participants.
        (4, QUESTIONS[3][1], 22, 22, TOP[4]),
        # Q5: a5_ian, a5_ruth, a5_finance_as_q3, a5_nicola, a5_icb (prefix) + s5_lou (suffix,
        # posted in Q6's time) + qt5_grace (quote) + w5_fi, w5_mira (window) + p5_jimmy_ruth,
        # p5_sutcliffe_fi (reply) = 11 by 11 people, + bulk b5_01..10 = 21, 21.
        (5, QUESTIONS[4][1], 21, 21, TOP[5]),
        # Q6: a6_kpo, a6_sanjay, a6_kerry, a6_rob, a6_dee, a6_bo, t3a (prefix) + w6_estates,
        # w6_kat_reply_thanks (window) + t3b, p6_helen_sanjay (reply) = 11 by 11 people, + bulk
        # b6_01..08 = 19, 19. (thanks is the host's: no tag.)
        (6, QUESTIONS[5][1], 19, 19, TOP[6]),
    ]
    # Non-retweets in the window by retweets, then likes. The context post ctx (250 retweets)
    # is not collected, so it is not here. a5_ian and q5 tie on 15: likes 33 > 21.
    assert _top_tweets(stats) == [
        _top("a2_helen", "HelenBevan", 179, 595, 119342),
        _top("q2", HOST, 48, 60, 9800),
        _top("a2_jimmy", "jimmy_parvin", 36, 88, 7400),
        _top("q1", HOST, 31, 40, 8800),
        _top("a2_nicola", "DrNicolaBurgess", 27, 71, 6100),
        _top("q4", HOST, 22, 30, 5600),
        _top("a4_kat", "ChiefNurseKat", 19, 52, 4300),
        _top("q3", HOST, 17, 25, 5200),
        _top("a5_ian", "DeputyCEO_Ian", 15, 33, 3900),
        _top("q5", HOST, 15, 21, 4100),
        # (11th would be q6 with 12.)
    ]


def test_stats_all_window(chat: CliRunnerFn) -> None:
    stats = _stats(chat, "all")
    assert set(stats) == STATS_KEYS
    assert stats["chat"] == SLUG
    assert stats["window"] == "all"
    # 58 + EarlyBird_Val (before) + LateLurker_Ed (after) = 60; everyone else who posts outside
    # the window also posts in it.
    assert stats["participants"] == 60
    # originals 143 + replies 32 + quotes 6 = 181.
    assert stats["original_tweets"] == 181
    assert stats["retweets"] == 162  # 153 + before 5 + after 4
    assert stats["replies"] == 32  # 27 + before 1 + after 4
    assert stats["quotes"] == 6  # 5 + after 1 (qt2_data_next_day)
    # Answers after the window: qt2_data_next_day (Q2), t3c, t3d, p6_sutcliffe_rob, late_ed_a6
    # (Q6) = 5, one of them by the panel (p6_sutcliffe_rob). Others' answers 122 + 4 = 126, still
    # 14 answered: 126 - 14 = 112.
    assert stats["unanswered"] == 112
    assert stats["trending"] == []
    assert _polls(stats) == POLLS
    assert _questions(stats) == [
        (1, QUESTIONS[0][1], 18, 18, TOP[1]),
        # + qt2_data_next_day by QIdataNerd, who already answered Q2 (a2_data): 35, 31.
        (2, QUESTIONS[1][1], 35, 31, TOP[2]),
        (3, QUESTIONS[2][1], 27, 26, TOP[3]),
        (4, QUESTIONS[3][1], 22, 22, TOP[4]),
        (5, QUESTIONS[4][1], 21, 21, TOP[5]),
        # + t3c (PhysioPete_QI, already), t3d (QI_Fellow_Nia), p6_sutcliffe_rob (Sutcliffe1987),
        # late_ed_a6 (LateLurker_Ed): 19 + 4 = 23 answers, 19 + 3 = 22 participants.
        (6, QUESTIONS[5][1], 23, 22, TOP[6]),
    ]
    # The promo (26, the day before) and the wrap-up (20, after) push out a5_ian and q5.
    assert _top_tweets(stats) == [
        _top("a2_helen", "HelenBevan", 179, 595, 119342),
        _top("q2", HOST, 48, 60, 9800),
        _top("a2_jimmy", "jimmy_parvin", 36, 88, 7400),
        _top("q1", HOST, 31, 40, 8800),
        _top("a2_nicola", "DrNicolaBurgess", 27, 71, 6100),
        _top("promo", HOST, 26, 34, 5100),
        _top("q4", HOST, 22, 30, 5600),
        _top("wrap", HOST, 20, 66, 4800),
        _top("a4_kat", "ChiefNurseKat", 19, 52, 4300),
        _top("q3", HOST, 17, 25, 5200),
    ]


# (username, start of text, question, tag_method): the posts each tagging rule is about.
TAGS: list[tuple[str, str, int | None, str | None]] = [
    # Not tagged: before the first question (whatever the kind), the host's non-question posts,
    # and anything without a marker or a tagged parent after the window.
    (HOST, "Tomorrow 7-8pm BST", None, None),  # promo, the day before
    ("RajImproves", "@WarwickBSchool Diary cleared", None, None),  # reply before the window
    ("PharmDSam", "First tweetchat for me tonight", None, None),  # 17:55
    (HOST, "Welcome to tonight's", None, None),  # 18:00:00, before Q1
    ("HelenBevan", "Hello from Helen", None, None),  # panel hello before Q1
    ("CarerVoiceUK", "As a carer I love", None, None),  # before Q1
    ("RajImproves", "@WarwickBSchool Evening all", None, None),  # reply to welcome, before Q1
    (HOST, "Thank you all for joining", None, None),  # host, not a question post: no window tag
    (HOST, "That's a wrap!", None, None),
    ("LeedsQIcoach", "That hour flew by!", None, None),  # 19:00:00: the end is exclusive
    ("MidwifeMaya", "@WarwickBSchool Thanks all, see you", None, None),  # after, untagged parent
    ("GPPracticeMgr", "Great chat tonight", None, None),
    # The host's question posts carry their number (the 18:36 re-post of Q4 too).
    (HOST, "Q1. Let's start with a poll!", 1, "prefix"),
    (HOST, "Q2. Why is it important", 2, "prefix"),
    (HOST, "Q3. When have you seen", 3, "prefix"),
    (HOST, "Q4. When have you seen", 4, "prefix"),
    (HOST, "Q4. (again, for anyone", 4, "prefix"),
    (HOST, "Q5. What advice", 5, "prefix"),
    (HOST, "Q6. Last question", 6, "prefix"),
    # Rule 1, prefix: every leading style, any case, after leading @mentions and hashtags.
    ("LeedsQIcoach", "A1 voted!", 1, "prefix"),
    ("PharmDSam", "A1. My very first", 1, "prefix"),
    ("ward7_sister", "Q1 - third time lucky", 1, "prefix"),
    ("OTLeaderJo", "@WarwickBSchool A1: second chat", 1, "prefix"),
    ("HelenBevan", "Q2: One of the classic models", 2, "prefix"),
    ("NurseAmyQI", "A2 Leaders role model", 2, "prefix"),
    ("RajImproves", "A2. People look at leaders", 2, "prefix"),
    ("MidwifeMaya", "A2) Leaders must be", 2, "prefix"),
    ("OTLeaderJo", "a2 - others need to see", 2, "prefix"),
    ("QIdataNerd", "Q.2 Leaders light the way", 2, "prefix"),
    ("LeanHealthBen", "A 2: Lighting the path", 2, "prefix"),
    ("DrTomAcute", "Re Q2: We all follow", 2, "prefix"),
    ("HelenaFlowQI", "#LeadingQI #QIHour A2 leaders", 2, "prefix"),
    ("ImproveCymru_B", "@WarwickBSchool @HelenBevan A2:", 2, "prefix"),
    ("SchwartzRoundsH", "@WarwickBSchool #LeadingQI A3.", 3, "prefix"),
    ("NurseAmyQI", "a3: Unintentional", 3, "prefix"),
    ("CareHomeCath", "Q3 Leaders who never", 3, "prefix"),
    ("MHnurseLeon", "Q4 Building capability", 4, "prefix"),
    ("StudentNurseBo", "A4 <script>", 4, "prefix"),
    ("BoardChairRuth", "A5: Do the training", 5, "prefix"),
    ("RadiogKerry", "A6. Share more", 6, "prefix"),
    ("DieticianDee", "A6) Start a QI huddle", 6, "prefix"),
    ("LateLurker_Ed", "A6 late to the party", 6, "prefix"),  # after the window: still tagged
    # The leading marker wins over a later one ("…As we said in Q3…").
    ("FinanceForQI", "A5. Be patient. As we said in Q3", 5, "prefix"),
    # Rule 1 before rule 3: a reply to the Q2 post that starts (after the @mention) with A3.
    ("EstatesImprove", "@WarwickBSchool A3: when estates", 3, "prefix"),
    # A reply that quotes the Q4 post, with a leading marker.
    ("ResearchNurseCJ", "@PatientPartnerZ A4 yes!", 4, "prefix"),
    # Rule 2, suffix; each posted while a later question is current.
    ("ED_consultantV", "Senior leaders set the tone", 2, "suffix"),  # `… A2 #LeadingQI #QIHour`
    ("HelenaFlowQI", "Openness and humility", 4, "suffix"),  # `(A4)`, in Q5's time
    ("PharmTechLou", "Celebrate the small wins", 5, "suffix"),  # `#A5` last, in Q6's time
    # Rule 3, replies: to a question post (one in a later question's time; one to the Q4 re-post).
    ("DrTomAcute", "@WarwickBSchool Done, my second!", 1, "reply"),
    ("MedEdMira", "@WarwickBSchool Leaders go first", 2, "reply"),
    ("RadiogKerry", "@WarwickBSchool Leaders who say thank you", 4, "reply"),
    # Threads inherit: T1 (Q2, running into Q3's time, t1d/t1c read before their parents),
    # T2 (Q3, into Q4's time), T3 (Q6, past the end of the window).
    ("ProjectMgr_Tess", "@MHnurseLeon Agree", 2, "reply"),
    ("MHnurseLeon", "@ProjectMgr_Tess Exactly", 2, "reply"),
    ("HCA_Dani", "@ProjectMgr_Tess @MHnurseLeon Seen this", 2, "reply"),
    ("ChaplainMark", "@PaedsNurseEm That fear lingers", 3, "reply"),
    ("PaedsNurseEm", "@ChaplainMark It did", 3, "reply"),
    ("jimmy_parvin", "@PaedsNurseEm @ChaplainMark Psychological", 3, "reply"),
    ("DigitalQI_Omar", "@PhysioPete_QI Can I join?", 6, "reply"),
    ("PhysioPete_QI", "@DigitalQI_Omar Of course", 6, "reply"),  # 19:02
    ("QI_Fellow_Nia", "@DigitalQI_Omar @PhysioPete_QI Count me in", 6, "reply"),  # 19:06
    # Panel replies inherit too (and are answers). The host's replies to answers are not: a
    # question tag is "the question number a post answers", and of the host's posts only the
    # question posts carry a number (PRODUCT.md, "question tag").
    ("KPOteam_SASH", "@PharmDSam Welcome!", 1, "reply"),
    ("Sutcliffe1987", "@HospiceQI_Rob Monthly reflection", 6, "reply"),  # 19:04
    (HOST, "@RajImproves Love this", None, None),
    (HOST, "@PatientPartnerZ Brilliant example", None, None),
    # Rule 4, quotes of a question post without a marker (in a later question's time / next day).
    ("LabLeadLiz", "This one hits home", 3, "quote"),
    ("QIcoachGrace", "Saving this one", 5, "quote"),
    ("QIdataNerd", "Still thinking about this question", 2, "quote"),
    # Rule 5, time window (non-host, in the window, after the first question).
    ("PhysioPete_QI", "Voted! Been to every one", 1, "window"),
    ("SafetyScienceAl", "Leading isn't from the front", 2, "window"),
    ("QI_Fellow_Nia", "Perfect timing for tonight's chat", 2, "window"),  # quotes the context post
    ("ResearchNurseCJ", "This model is so useful", 3, "window"),  # quotes a Q2 answer, in Q3 time
    ("DigitalQI_Omar", "Saw a great project shelved", 3, "window"),
    ("ICB_QI_Lead", "Compassionate, inclusive leaders", 4, "window"),  # 18:32: before the re-post
    ("DentalQI_Ash", "Like we said in Q3", 4, "window"),  # a mid-text marker is no marker
    ("CommunityRN_Fi", "As a community nurse", 5, "window"),  # "As a" is no marker
    ("EstatesImprove", "Invite estates and facilities", 6, "window"),
    # A reply to an untagged post (the host's thanks) falls through to the time window.
    ("ChiefNurseKat", "@WarwickBSchool Thank you, brilliant", 6, "window"),
]


def _find(posts: list[dict[str, Any]], username: str, start: str) -> dict[str, Any]:
    found = [
        p
        for p in posts
        if p["username"] == username and p["kind"] != "retweet" and p["text"].startswith(start)
    ]
    assert len(found) == 1, (username, start, len(found))
    return found[0]


@pytest.mark.parametrize("order", ["as-recorded", "pages-reversed"])
def test_question_tags(cli: CliRunnerFn, tmp_path: Path, order: str) -> None:
    # Tags are a function of the collected posts, not of the order the pages arrive in.
    lines = FIXTURE.read_text(encoding="utf-8").splitlines(keepends=True)
    source = FIXTURE
    if order == "pages-reversed":
        source = tmp_path / "qi-chat-reversed.jsonl"
        source.write_text("".join(reversed(lines)), encoding="utf-8")
    _create_and_import(cli, source)
    posts = _export(cli)["posts"]
    got = []
    for username, start, _question, _method in TAGS:
        post = _find(posts, username, start)
        got.append((username, start, post["question"], post["tag_method"]))
    assert got == TAGS


def test_exported_posts(chat: CliRunnerFn) -> None:
    exported = _export(chat)
    assert set(exported) >= {"chat", "stats", "posts"}
    # The export's stats are the chat window's (whose figures test_stats_chat_window checks).
    assert exported["stats"] == _stats(chat, "chat")
    posts = exported["posts"]
    keys = {"id", "created_at", "username", "kind", "question", "tag_method", "in_reply_to_id"}
    keys |= {"quoted_id", "retweeted_id", "retweets", "likes", "text"}
    assert all(set(p) >= keys for p in posts)
    # 343 distinct collected posts (344 entries in the file: t1c twice); ctx is context only.
    assert len(posts) == 343
    assert len({p["id"] for p in posts}) == 343
    assert [p["id"] for p in posts].count(ID["t1c"]) == 1
    assert ID["ctx"] not in {p["id"] for p in posts}
    assert Counter(p["kind"] for p in posts) == {
        "original": 143,
        "reply": 32,
        "quote": 6,
        "retweet": 162,
    }
    by_id = {p["id"]: p for p in posts}
    # retweets = max(public_metrics.retweet_count, collected retweets of it).
    assert by_id[ID["a3_grace"]]["retweets"] == 4  # rc 2, 4 collected
    assert by_id[ID["w4_icb"]]["retweets"] == 3  # rc 0, 3 collected
    assert by_id[ID["a3_cath"]]["retweets"] == 3  # rc 3, none collected
    assert by_id[ID["a2_helen"]]["retweets"] == 179  # rc 179, 26 collected
    assert by_id[ID["a2_helen"]]["likes"] == 595
    # Untrusted text is kept verbatim.
    script = _find(posts, "StudentNurseBo", "A4 <script>")
    assert script["text"] == (
        "A4 <script>alert(1)</script> effective leaders make time for students too "
        "#LeadingQI #QIHour"
    )
    # A reply that quotes is a quote, and keeps both references.
    both = _find(posts, "ResearchNurseCJ", "@PatientPartnerZ A4 yes!")
    assert both["kind"] == "quote"
    assert both["quoted_id"] == ID["q4"]
    assert both["in_reply_to_id"] == ID["a4_patient"]
    # A retweet of a question post, and a retweet of the context post (counted; its original not).
    rt_q1 = [p for p in posts if p["kind"] == "retweet" and p["retweeted_id"] == ID["q1"]]
    assert len(rt_q1) == 13  # 5 + 8 in the window
    assert rt_q1[0]["text"].startswith("RT @WarwickBSchool: Q1. Let's start with a poll!")
    rt_ctx = [p for p in posts if p["kind"] == "retweet" and p["retweeted_id"] == ID["ctx"]]
    assert [p["username"] for p in rt_ctx] == ["QIdataNerd"]


def test_importing_again_changes_nothing(chat: CliRunnerFn) -> None:
    before = {w: _stats(chat, w) for w in ("chat", "all")}
    result = chat("import", SLUG, str(FIXTURE))
    assert result.exit_code == 0, result.output
    assert {w: _stats(chat, w) for w in ("chat", "all")} == before
    assert len(_export(chat)["posts"]) == 343
