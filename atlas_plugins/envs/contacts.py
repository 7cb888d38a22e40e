"""Contacts server: the seeded address book (c1..c12) plus groups, birthdays and text messages."""

import copy
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from ._base import (
    NOW,
    TODAY,
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    Ids,
    arg,
    check_email,
    lookup,
    main,
    new_server,
)
from ._fixtures import GROUPS, people

ContactId = Annotated[str, arg("Contact id as returned by list_contacts or search, e.g. 'c3'.")]
GroupArg = Annotated[
    str, arg("Group name, e.g. 'work', 'family', 'friends' or 'clients'.", min_length=1, max_length=40)
]
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{5,20}$")


@dataclass
class ContactsState:
    contacts: dict[str, dict[str, Any]]
    groups: list[str]
    texts: list[dict[str, Any]] = field(default_factory=list)
    ids: Ids = field(default_factory=Ids)


def initial_state(seed: int, episode: str = "default") -> ContactsState:
    ppl = copy.deepcopy(people(seed))
    ids = Ids(c=len(ppl) + 1)
    return ContactsState(contacts={p["id"]: p for p in ppl}, groups=list(GROUPS), ids=ids)


def _card(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("id", "name", "email", "phone", "company", "groups")}


def _phone(value: str) -> str:
    v = value.strip()
    if not _PHONE_RE.match(v):
        raise EnvError(f"invalid phone number '{value}'; use digits with optional +, spaces, dashes, e.g. +1-555-0123")
    return v


def _next_birthday(bday: str) -> date:
    b = date.fromisoformat(bday)
    for year in (TODAY.year, TODAY.year + 1):
        try:
            d = b.replace(year=year)
        except ValueError:  # 29 Feb in a non-leap year
            d = date(year, 3, 1)
        if d >= TODAY:
            return d
    return d


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "contacts", "Address book: people with email, phone, company, birthday and groups; text messaging."
    )
    store: EpisodeStore[ContactsState] = EpisodeStore(initial_state, seed)

    @srv.tool()
    async def list_contacts(
        ctx: Context,
        group: Annotated[str | None, arg("Only contacts in this group (e.g. 'family').")] = None,
        limit: Annotated[int, arg("Maximum contacts to return, sorted by name.", ge=1, le=200)] = 50,
    ) -> dict:
        """List contacts (id, name, email, phone, company, groups), alphabetically by name."""
        st = store.get(ctx)
        if group is not None and group.lower() not in st.groups:
            raise EnvError(f"unknown group '{group}'; groups: {', '.join(st.groups)}")
        cs = sorted(
            (c for c in st.contacts.values() if group is None or group.lower() in c["groups"]),
            key=lambda c: (c["name"].lower(), c["id"]),
        )
        return {"total": len(cs), "contacts": [_card(c) for c in cs[:limit]]}

    @srv.tool()
    async def get_details(contact_id: ContactId, ctx: Context) -> dict:
        """Get a contact's full record: job title, city, birthday, notes and more."""
        return dict(lookup(store.get(ctx).contacts, contact_id, "contact id"))

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Text to match against name, email, phone, company, title or city.", min_length=1)],
        ctx: Context,
        limit: Annotated[int, arg("Maximum results.", ge=1, le=100)] = 10,
    ) -> dict:
        """Find contacts whose fields contain every word of the query (case-insensitive)."""
        st = store.get(ctx)
        words = query.lower().split()
        hits = [
            _card(c)
            for c in sorted(st.contacts.values(), key=lambda c: c["name"].lower())
            if all(
                w in " ".join(str(c[k]) for k in ("name", "email", "phone", "company", "title", "city")).lower()
                for w in words
            )
        ]
        return {"query": query, "total": len(hits), "contacts": hits[:limit]}

    @srv.tool()
    async def find_by_email(
        email: Annotated[str, arg("Exact email address to look up.")],
        ctx: Context,
    ) -> dict:
        """Look up the contact that owns an email address (exact match, case-insensitive)."""
        st = store.get(ctx)
        addr = email.strip().lower()
        for c in st.contacts.values():
            if c["email"].lower() == addr:
                return dict(c)
        raise EnvError(f"no contact has email '{email}'; use search to look up by name")

    @srv.tool()
    async def add_contact(
        name: Annotated[str, arg("Full name, e.g. 'Jane Doe'.", min_length=1, max_length=100)],
        ctx: Context,
        email: Annotated[str | None, arg("Email address.")] = None,
        phone: Annotated[str | None, arg("Phone number, e.g. '+1-555-0123'.")] = None,
        company: Annotated[str, arg("Company or organisation.")] = "",
        title: Annotated[str, arg("Job title.")] = "",
        city: Annotated[str, arg("City they live in.")] = "",
        birthday: Annotated[str | None, arg("Birthday as YYYY-MM-DD.")] = None,
        groups: Annotated[list[str] | None, arg("Groups to put them in, e.g. ['friends'].")] = None,
    ) -> dict:
        """Add a new contact; at least an email or a phone number is required. Returns the new id."""
        st = store.get(ctx)
        if not email and not phone:
            raise EnvError("give at least one of email or phone for a new contact")
        addr = check_email(email) if email else ""
        if addr and any(c["email"].lower() == addr for c in st.contacts.values()):
            dup = next(c["id"] for c in st.contacts.values() if c["email"].lower() == addr)
            raise EnvError(f"a contact with email {addr} already exists ({dup}); use update_contact instead")
        bday = ""
        if birthday:
            try:
                bday = date.fromisoformat(birthday).isoformat()
            except ValueError:
                raise EnvError(f"invalid birthday '{birthday}'; expected YYYY-MM-DD") from None
        gs = sorted({g.strip().lower() for g in (groups or []) if g.strip()})
        for g in gs:
            if g not in st.groups:
                st.groups.append(g)
        parts = name.strip().split()
        cid = st.ids.new("c")
        st.contacts[cid] = {
            "id": cid,
            "first_name": parts[0],
            "last_name": " ".join(parts[1:]),
            "name": " ".join(parts),
            "email": addr,
            "phone": _phone(phone) if phone else "",
            "company": company,
            "title": title,
            "city": city,
            "birthday": bday,
            "groups": gs,
            "notes": "",
        }
        return {"created": dict(st.contacts[cid])}

    @srv.tool()
    async def update_contact(
        contact_id: ContactId,
        ctx: Context,
        email: Annotated[str | None, arg("New email (omit to keep).")] = None,
        phone: Annotated[str | None, arg("New phone (omit to keep).")] = None,
        company: Annotated[str | None, arg("New company (omit to keep).")] = None,
        title: Annotated[str | None, arg("New job title (omit to keep).")] = None,
        city: Annotated[str | None, arg("New city (omit to keep).")] = None,
        notes: Annotated[str | None, arg("Replace the free-text notes (omit to keep).")] = None,
    ) -> dict:
        """Change fields of a contact; fields left out are unchanged."""
        c = lookup(store.get(ctx).contacts, contact_id, "contact id")
        before = dict(c)
        if email is not None:
            c["email"] = check_email(email)
        if phone is not None:
            c["phone"] = _phone(phone)
        for key, val in (("company", company), ("title", title), ("city", city), ("notes", notes)):
            if val is not None:
                c[key] = val
        return {"updated": dict(c), "changed_fields": sorted(k for k in c if c[k] != before[k])}

    @srv.tool()
    async def delete_contact(contact_id: ContactId, ctx: Context) -> dict:
        """Delete a contact from the address book."""
        st = store.get(ctx)
        c = lookup(st.contacts, contact_id, "contact id")
        del st.contacts[c["id"]]
        return {"deleted": c["id"], "name": c["name"]}

    @srv.tool()
    async def list_groups(ctx: Context) -> dict:
        """List contact groups and how many members each has."""
        st = store.get(ctx)
        return {
            "groups": [{"name": g, "members": sum(g in c["groups"] for c in st.contacts.values())} for g in st.groups]
        }

    @srv.tool()
    async def add_to_group(contact_id: ContactId, group: GroupArg, ctx: Context) -> dict:
        """Add a contact to a group (the group is created if it does not exist)."""
        st = store.get(ctx)
        c = lookup(st.contacts, contact_id, "contact id")
        g = group.strip().lower()
        if g not in st.groups:
            st.groups.append(g)
        if g not in c["groups"]:
            c["groups"] = sorted(c["groups"] + [g])
        return {"id": c["id"], "groups": c["groups"]}

    @srv.tool()
    async def remove_from_group(contact_id: ContactId, group: GroupArg, ctx: Context) -> dict:
        """Remove a contact from a group."""
        c = lookup(store.get(ctx).contacts, contact_id, "contact id")
        g = group.strip().lower()
        if g not in c["groups"]:
            raise EnvError(
                f"{c['id']} ({c['name']}) is not in group '{group}'; their groups: {', '.join(c['groups']) or 'none'}"
            )
        c["groups"].remove(g)
        return {"id": c["id"], "groups": c["groups"]}

    @srv.tool()
    async def upcoming_birthdays(
        ctx: Context,
        days: Annotated[int, arg("Look this many days ahead of today (2026-03-02).", ge=1, le=366)] = 30,
    ) -> dict:
        """List contacts whose birthday falls within the next N days, soonest first, with their new age."""
        st = store.get(ctx)
        out = []
        for c in st.contacts.values():
            if not c["birthday"]:
                continue
            nxt = _next_birthday(c["birthday"])
            if (nxt - TODAY).days <= days:
                out.append(
                    {
                        "id": c["id"],
                        "name": c["name"],
                        "date": nxt.isoformat(),
                        "in_days": (nxt - TODAY).days,
                        "turns": nxt.year - int(c["birthday"][:4]),
                    }
                )
        out.sort(key=lambda x: (x["in_days"], x["id"]))
        return {"from": TODAY.isoformat(), "to": (TODAY + timedelta(days=days)).isoformat(), "birthdays": out}

    @srv.tool()
    async def send_message(
        contact_id: ContactId,
        text: Annotated[str, arg("Text message (SMS) content, up to 480 characters.", min_length=1, max_length=480)],
        ctx: Context,
    ) -> dict:
        """Send a text message (SMS) to a contact's phone number."""
        st = store.get(ctx)
        c = lookup(st.contacts, contact_id, "contact id")
        if not c["phone"]:
            raise EnvError(f"{c['id']} ({c['name']}) has no phone number; add one with update_contact or email them")
        sms = {
            "id": f"sms{len(st.texts) + 1}",
            "contact_id": c["id"],
            "to": c["phone"],
            "text": text,
            "sent_at": (NOW + timedelta(minutes=len(st.texts) + 1)).strftime("%Y-%m-%d %H:%M"),
            "status": "delivered",
        }
        st.texts.append(sms)
        return {"sent": sms}

    @srv.tool()
    async def list_sent_messages(
        ctx: Context,
        contact_id: Annotated[str | None, arg("Only messages sent to this contact id.")] = None,
    ) -> dict:
        """List text messages sent in this session, oldest first."""
        st = store.get(ctx)
        if contact_id is not None:
            lookup(st.contacts, contact_id, "contact id")
        msgs = [m for m in st.texts if contact_id is None or m["contact_id"].lower() == contact_id.strip().lower()]
        return {"count": len(msgs), "messages": msgs}

    return srv


if __name__ == "__main__":
    main(build)
