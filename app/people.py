"""People: accounts linked across networks (the same person on X and Bluesky counts once).

A person's accounts share one key, `LinkedAccount.person`: the id of the first of them by
(network, id). An account never linked is a person of its own, keyed by its id. Every collected
post carries its author's key (`ChatPost.person`), so participants are counted by it; linking or
unlinking rewrites the key on the posts of the accounts concerned, in every chat, and works out
those chats' cross-posts again (`app.ingest.crossposts`), since they depend on who is who.

Accounts are named as people write them: `x:HelenBevan` or `@HelenBevan` (an X username),
`helen@mastodon.social` (a Mastodon handle), `helen.bsky.social` (a Bluesky handle), a network
prefix with a username or an id (`bluesky:did:plc:…`, `x:1234`). Only stored accounts (authors of
collected posts or of their context) can be linked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.config import Settings
from app.db.lookup import Lookup, keyed
from app.db.models import Account, Chat, ChatPost, LinkedAccount
from app.errors import InvalidInput, NotFound
from app.ingest.crossposts import refresh_copies
from app.ingest.parse import account_network
from app.links import NETWORKS

MAX_REF = 400
_PREFIX = re.compile(r"^(x|mastodon|bluesky):(.+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AccountRef:
    network: str
    value: str  # a username or an id


def parse_ref(text: str) -> AccountRef:
    """An account as written (see the module's doc) → its network and name."""
    value = text.strip()
    if not value:
        raise InvalidInput("an account is empty: give x:USERNAME, user@server or a handle")
    if len(value) > MAX_REF or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidInput(f"{text[:80]!r} is not an account (no spaces, at most {MAX_REF} chars)")
    prefixed = _PREFIX.match(value)
    if prefixed:
        network, name = prefixed.group(1).lower(), prefixed.group(2).removeprefix("@")
        if not name:
            raise InvalidInput(f"{text!r} names no account after {network}:")
        return AccountRef(network, name)
    name = value.removeprefix("@")
    if name.startswith("did:"):
        return AccountRef("bluesky", name)
    if "@" in name:
        return AccountRef("mastodon", name)
    if "." in name:
        return AccountRef("bluesky", name)
    return AccountRef("x", name)


def label(account: Account | None, network: str, account_id: str) -> str:
    """How an account is shown: `x:HelenBevan`, `mastodon:helen@mastodon.social`."""
    return f"{network}:{account.username if account and account.username else account_id}"


def resolve(session: Session, refs: Sequence[str]) -> list[Account]:
    """The stored accounts `refs` name, in order, without repeats; every unknown or ambiguous
    one is named in one error."""
    found: dict[tuple[str, str], Account] = {}
    problems: list[str] = []
    for text in refs:
        ref = parse_ref(text)
        matches = list(
            session.scalars(
                select(Account)
                .where(
                    Account.network == ref.network,
                    or_(Account.id == ref.value, func.lower(Account.username) == ref.value.lower()),
                )
                .order_by(Account.id)
            )
        )
        exact = [a for a in matches if a.id == ref.value]
        if exact:
            matches = exact
        if not matches:
            problems.append(
                f"no stored {ref.network} account {ref.value!r} (from {text!r}): only authors of"
                " collected posts can be linked"
            )
        elif len(matches) > 1:
            ids = ", ".join(f"{ref.network}:{a.id}" for a in matches)
            problems.append(f"{text!r} names {len(matches)} accounts ({ids}): give the id")
        else:
            found.setdefault((matches[0].network, matches[0].id), matches[0])
    if problems:
        raise NotFound("; ".join(problems))
    return list(found.values())


def persons_of(session: Session, author_ids: Iterable[str]) -> dict[str, str]:
    """Each author's person key (their own id unless linked)."""
    ids = sorted(set(author_ids))
    people = {author_id: author_id for author_id in ids}
    people.update((row[0], row[1]) for row in _LINKED.rows(session, ids))
    return people


_LINKED = Lookup(
    lambda ids: select(LinkedAccount.account_id, LinkedAccount.person).where(ids),
    LinkedAccount.network,
    LinkedAccount.account_id,
    account_network,
)


def refresh_persons(session: Session, chat_id: int) -> None:
    """Put right the person key of the chat's posts (a post collected while its author was being
    linked may carry the old one): linked authors get their person's, others their own id."""
    rows = session.execute(
        select(LinkedAccount.network, LinkedAccount.account_id, LinkedAccount.person)
    ).all()
    session.execute(
        update(ChatPost)
        .where(
            ChatPost.chat_id == chat_id,
            ChatPost.person != ChatPost.author_id,
            ~select(LinkedAccount.account_id)
            .where(
                LinkedAccount.network == ChatPost.network,
                LinkedAccount.account_id == ChatPost.author_id,
            )
            .exists(),
        )
        .values(person=ChatPost.author_id)
    )
    if rows:
        session.connection().execute(
            update(ChatPost)
            .where(
                ChatPost.chat_id == chat_id,
                ChatPost.network == bindparam("b_network"),
                ChatPost.author_id == bindparam("b_author"),
                ChatPost.person != bindparam("b_person"),
            )
            .values(person=bindparam("b_person")),
            [{"b_network": n, "b_author": a, "b_person": p} for n, a, p in sorted(rows)],
        )


def _group_key(members: Iterable[tuple[str, str]]) -> str:
    return min(members)[1]


def _members(session: Session, persons: Iterable[str]) -> set[tuple[str, str]]:
    keys = sorted(set(persons))
    if not keys:
        return set()
    return {
        (network, account_id)
        for network, account_id in session.execute(
            select(LinkedAccount.network, LinkedAccount.account_id).where(
                LinkedAccount.person.in_(keys)
            )
        )
    }


def _rekey(session: Session, keys: dict[tuple[str, str], str]) -> list[str]:
    """Give the posts of these accounts (in every chat) their new person key; work out the
    cross-posts of the chats concerned again. Returns those chats' slugs."""
    rows = [
        {"b_network": network, "b_author": account_id, "b_person": person}
        for (network, account_id), person in sorted(keys.items())
    ]
    if not rows:
        return []
    session.connection().execute(
        update(ChatPost)
        .where(
            ChatPost.network == bindparam("b_network"),
            ChatPost.author_id == bindparam("b_author"),
        )
        .values(person=bindparam("b_person")),
        rows,
    )
    chat_ids = set(
        session.scalars(
            select(ChatPost.chat_id)
            .distinct()
            .where(
                keyed(
                    session,
                    ChatPost.network,
                    ChatPost.author_id,
                    [account_id for _, account_id in keys],
                    account_network,
                )
            )
        )
    )
    slugs = []
    for chat in session.scalars(select(Chat).where(Chat.id.in_(chat_ids)).order_by(Chat.slug)):
        refresh_copies(session, chat)
        slugs.append(chat.slug)
    session.flush()
    return slugs


@dataclass(slots=True)
class LinkResult:
    person: dict[str, Any] | None  # the person as `people` lists them (None: no group left)
    chats: list[str]  # the chats whose figures changed


def _linked_rows(session: Session, accounts: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    """The `linked_accounts` rows of these (network, account id) pairs."""
    return keyed(
        session,
        LinkedAccount.network,
        LinkedAccount.account_id,
        [account_id for _, account_id in accounts],
        account_network,
    )


def link(session: Session, refs: Sequence[str]) -> LinkResult:
    """Link the accounts `refs` as one person (with the accounts already linked to any of
    them)."""
    accounts = resolve(session, refs)
    if len(accounts) < 2:
        raise InvalidInput("give at least two different accounts to link")
    wanted = {(a.network, a.id) for a in accounts}
    existing = dict(
        session.execute(
            select(LinkedAccount.account_id, LinkedAccount.person).where(
                _linked_rows(session, wanted)
            )
        ).all()
    )
    members = wanted | _members(session, existing.values())
    key = _group_key(members)
    now = datetime.now(UTC)
    stored = {
        (row.network, row.account_id): row
        for row in session.scalars(select(LinkedAccount).where(_linked_rows(session, members)))
    }
    for network, account_id in sorted(members):
        row = stored.get((network, account_id))
        if row is None:
            session.add(
                LinkedAccount(network=network, account_id=account_id, person=key, linked_at=now)
            )
        else:
            row.person = key
    session.flush()
    chats = _rekey(session, dict.fromkeys(members, key))
    return LinkResult(person_of(session, key), chats)


def unlink(session: Session, refs: Sequence[str]) -> LinkResult:
    """Take these accounts out of their person: each is a person of its own again (and a
    person left with one account is no longer linked)."""
    accounts = resolve(session, refs)
    leaving = {(a.network, a.id) for a in accounts}
    rows = {
        (row.network, row.account_id): row
        for row in session.scalars(select(LinkedAccount).where(_linked_rows(session, leaving)))
    }
    missing = [a for a in accounts if (a.network, a.id) not in rows]
    if missing:
        names = ", ".join(label(a, a.network, a.id) for a in missing)
        raise InvalidInput(f"not linked to anyone: {names}")
    persons = {row.person for row in rows.values()}
    members = _members(session, persons)
    keys: dict[tuple[str, str], str] = {member: member[1] for member in leaving}
    session.execute(delete(LinkedAccount).where(_linked_rows(session, leaving)))
    by_person: dict[str, set[tuple[str, str]]] = {}
    for network, account_id in members - leaving:
        row = session.get(LinkedAccount, (network, account_id))
        assert row is not None
        by_person.setdefault(row.person, set()).add((network, account_id))
    remaining_key: str | None = None
    for group in by_person.values():
        if len(group) == 1:  # one account is nobody's link
            (alone,) = group
            session.execute(
                delete(LinkedAccount).where(
                    LinkedAccount.network == alone[0], LinkedAccount.account_id == alone[1]
                )
            )
            keys[alone] = alone[1]
            continue
        key = _group_key(group)
        remaining_key = key
        for member in group:
            row = session.get(LinkedAccount, member)
            assert row is not None
            row.person = key
            keys[member] = key
    session.flush()
    chats = _rekey(session, keys)
    person = person_of(session, remaining_key) if remaining_key and len(by_person) == 1 else None
    return LinkResult(person, chats)


def person_of(session: Session, key: str) -> dict[str, Any] | None:
    found = [p for p in people(session, [key]) if p["person"] == key]
    return found[0] if found else None


def people(session: Session, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The linked people: {"person": key, "accounts": [{network, id, username, name}]}, by
    their first account's username."""
    query = select(LinkedAccount, Account).outerjoin(
        Account,
        (Account.network == LinkedAccount.network) & (Account.id == LinkedAccount.account_id),
    )
    if keys is not None:
        query = query.where(LinkedAccount.person.in_(list(keys)))
    groups: dict[str, list[dict[str, Any]]] = {}
    order = {network: index for index, network in enumerate(NETWORKS)}
    for row, account in session.execute(query):
        groups.setdefault(row.person, []).append(
            {
                "network": row.network,
                "id": row.account_id,
                "username": account.username if account else "",
                "name": account.name if account else "",
                "label": label(account, row.network, row.account_id),
                "linked_at": row.linked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    out: list[dict[str, Any]] = []
    for key, accounts in groups.items():
        accounts.sort(key=lambda a: (order.get(a["network"], 99), a["username"].lower(), a["id"]))
        out.append({"person": key, "accounts": accounts})
    out.sort(key=lambda p: (p["accounts"][0]["username"].lower(), p["person"]))
    return out


async def announce_reload(settings: Settings, slugs: Sequence[str]) -> None:
    """Tell the server processes sharing this database through Redis to read these chats again
    (as a change of their run of show does)."""
    from app.live.sync import make_sync

    sync = make_sync(settings.redis_url, settings.database_url)
    await sync.start()
    try:
        for slug in slugs:
            await sync.publish(slug, {"kind": "reload"})
    finally:
        await sync.close()
