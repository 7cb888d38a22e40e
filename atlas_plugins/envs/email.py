"""Email server: a seeded mailbox for alex.morgan@example.com with folders, labels and drafts."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from ._base import (
    NOW,
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
    one_of,
    rng_for,
)
from ._fixtures import OWNER, people

FOLDERS = ["inbox", "sent", "drafts", "archive", "trash"]
MessageId = Annotated[str, arg("Message id as returned by list_messages or search, e.g. 'm4'.")]
Recipients = Annotated[list[str], arg("Recipient email addresses, e.g. ['priya.patel@northwind.com'].", min_length=1)]

_TEMPLATES = [
    (
        "Q1 budget numbers",
        "Hi Alex,\n\nAttached are the Q1 budget numbers. Total spend is {amount} so far; can you review before Thursday?\n\nThanks,\n{first}",
        ["important"],
    ),
    (
        "Invoice #{inv} from {company}",
        "Hello,\n\nPlease find invoice #{inv} for {amount}, due on 2026-03-15.\n\nRegards,\n{first} {last}\n{company}",
        ["invoices"],
    ),
    ("Lunch this week?", "Hey Alex! Are you free for lunch this week? Thursday works best for me.\n\n{first}", []),
    (
        "Flight itinerary change",
        "Your travel agent {first} here: your flight to {city} moved by one hour. New departure 10:40.",
        ["travel"],
    ),
    (
        "Re: onboarding plan",
        "Thanks Alex, the onboarding plan looks good. One question: who owns the laptop setup?\n\n{first}",
        [],
    ),
    (
        "Weekly newsletter: {company}",
        "This week at {company}: product launch recap, hiring update and the team offsite in {city}.",
        ["newsletters"],
    ),
    (
        "Contract draft for review",
        "Alex, here is the contract draft. Key points: 12-month term, {amount} total, net-30 payment.\n\n{first}",
        ["important"],
    ),
    (
        "Photos from the weekend",
        "Sharing the photos from Saturday's hike. Let me know which ones you want printed!\n\n{first}",
        [],
    ),
    (
        "Server maintenance on Friday",
        "Heads-up: the staging servers go down for maintenance on Friday 2026-03-06 from 18:00 to 20:00.\n\n{first}, IT",
        [],
    ),
    (
        "Conference talk accepted",
        "Congratulations! Your talk was accepted for the {city} conference in April. Please confirm by 2026-03-09.",
        ["important", "travel"],
    ),
]


@dataclass
class MailState:
    messages: dict[str, dict[str, Any]]
    labels: list[str]
    ids: Ids = field(default_factory=Ids)
    clock: int = 0  # minutes after NOW for the next sent message: deterministic timestamps

    def stamp(self) -> str:
        self.clock += 1
        return (NOW + timedelta(minutes=self.clock)).strftime("%Y-%m-%d %H:%M")


def initial_state(seed: int, episode: str = "default") -> MailState:
    rng = rng_for("email", seed)
    ppl = people(seed)
    st = MailState(messages={}, labels=["important", "invoices", "travel", "newsletters"])
    order = rng.sample(range(len(_TEMPLATES)), len(_TEMPLATES))
    for n, ti in enumerate(order):
        subject, body, labels = _TEMPLATES[ti]
        p = rng.choice(ppl)
        fill = {
            "first": p["first_name"],
            "last": p["last_name"],
            "company": p["company"],
            "city": p["city"],
            "amount": f"${rng.randint(12, 480) * 100:,}",
            "inv": rng.randint(1000, 9999),
        }
        when = NOW - timedelta(days=7) + timedelta(hours=16 * n + rng.randint(0, 8), minutes=rng.randint(0, 59))
        mid = st.ids.new("m")
        st.messages[mid] = {
            "id": mid,
            "thread_id": f"t{mid[1:]}",
            "folder": "archive" if n < 2 else "inbox",
            "from": p["email"],
            "from_name": p["name"],
            "to": [OWNER["email"]],
            "cc": [],
            "subject": subject.format(**fill),
            "body": body.format(**fill),
            "date": min(when, NOW - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M"),
            "read": n < 5,
            "labels": list(labels),
            "in_reply_to": None,
        }
    boss = ppl[rng.randrange(len(ppl))]
    mid = st.ids.new("m")
    st.messages[mid] = {
        "id": mid,
        "thread_id": f"t{mid[1:]}",
        "folder": "sent",
        "from": OWNER["email"],
        "from_name": OWNER["name"],
        "to": [boss["email"]],
        "cc": [],
        "subject": "Status update",
        "body": f"Hi {boss['first_name']},\n\nThe migration is 80% done; ETA Wednesday.\n\nAlex",
        "date": (NOW - timedelta(days=2, hours=3)).strftime("%Y-%m-%d %H:%M"),
        "read": True,
        "labels": [],
        "in_reply_to": None,
    }
    return st


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    snippet = " ".join(m["body"].split())[:80]
    return {
        "id": m["id"],
        "folder": m["folder"],
        "from": m["from"],
        "to": m["to"],
        "subject": m["subject"],
        "date": m["date"],
        "read": m["read"],
        "labels": m["labels"],
        "snippet": snippet,
    }


def _newest_first(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(ms, key=lambda m: (m["date"], int(m["id"][1:])), reverse=True)


def build(seed: int = 0) -> EnvServer:
    srv = new_server("email", f"Mailbox of {OWNER['name']} <{OWNER['email']}>. Folders: {', '.join(FOLDERS)}.")
    store: EpisodeStore[MailState] = EpisodeStore(initial_state, seed)

    def _new(
        st: MailState,
        folder: str,
        to: list[str],
        subject: str,
        body: str,
        cc: list[str] | None = None,
        thread: str | None = None,
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        rcpt = [check_email(a, "recipient") for a in to]  # validate before an id is spent
        ccs = [check_email(a, "cc address") for a in (cc or [])]
        mid = st.ids.new("m")  # continues after the seeded ids; deleted ids are never reused
        msg = {
            "id": mid,
            "thread_id": thread or f"t{mid[1:]}",
            "folder": folder,
            "from": OWNER["email"],
            "from_name": OWNER["name"],
            "to": rcpt,
            "cc": ccs,
            "subject": subject,
            "body": body,
            "date": st.stamp(),
            "read": True,
            "labels": [],
            "in_reply_to": reply_to,
        }
        st.messages[mid] = msg
        return msg

    @srv.tool()
    async def list_folders(ctx: Context) -> dict:
        """List mail folders with total and unread message counts."""
        st = store.get(ctx)
        return {
            "folders": [
                {
                    "name": f,
                    "total": sum(m["folder"] == f for m in st.messages.values()),
                    "unread": sum(m["folder"] == f and not m["read"] for m in st.messages.values()),
                }
                for f in FOLDERS
            ]
        }

    @srv.tool()
    async def list_messages(
        ctx: Context,
        folder: Annotated[str, arg(f"Folder to list: {', '.join(FOLDERS)}.")] = "inbox",
        unread_only: Annotated[bool, arg("Only unread messages.")] = False,
        label: Annotated[str | None, arg("Only messages carrying this label, e.g. 'invoices'.")] = None,
        limit: Annotated[int, arg("Maximum messages to return (newest first).", ge=1, le=100)] = 20,
    ) -> dict:
        """List messages in a folder, newest first, with sender, subject, date and a snippet."""
        st = store.get(ctx)
        f = one_of(folder, FOLDERS, "folder")
        ms = [
            m
            for m in st.messages.values()
            if m["folder"] == f
            and (not unread_only or not m["read"])
            and (label is None or label.lower() in m["labels"])
        ]
        ms = _newest_first(ms)
        return {"folder": f, "total": len(ms), "messages": [_summary(m) for m in ms[:limit]]}

    @srv.tool()
    async def get_details(
        message_id: MessageId,
        ctx: Context,
        mark_read: Annotated[bool, arg("Mark the message as read, as opening it in a mail client does.")] = True,
    ) -> dict:
        """Open a message and return its full body and headers."""
        m = lookup(store.get(ctx).messages, message_id, "message id")
        if mark_read:
            m["read"] = True
        return dict(m)

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Words to find in subject, body or sender; all must match (case-insensitive).")],
        ctx: Context,
        folder: Annotated[str | None, arg("Restrict to one folder; default all folders except trash.")] = None,
        sender: Annotated[str | None, arg("Restrict to messages from this address (substring match).")] = None,
        limit: Annotated[int, arg("Maximum results.", ge=1, le=100)] = 20,
    ) -> dict:
        """Search messages by keywords, optionally within a folder or from a sender."""
        st = store.get(ctx)
        f = one_of(folder, FOLDERS, "folder") if folder else None
        words = query.lower().split()
        hits = [
            m
            for m in st.messages.values()
            if (m["folder"] == f if f else m["folder"] != "trash")
            and (not sender or sender.lower() in m["from"])
            and all(w in f"{m['subject']} {m['body']} {m['from']} {m['from_name']}".lower() for w in words)
        ]
        hits = _newest_first(hits)
        return {"query": query, "total": len(hits), "messages": [_summary(m) for m in hits[:limit]]}

    @srv.tool()
    async def send_message(
        to: Recipients,
        subject: Annotated[str, arg("Subject line.", min_length=1, max_length=200)],
        body: Annotated[str, arg("Plain-text body.")],
        ctx: Context,
        cc: Annotated[list[str] | None, arg("Optional CC addresses.")] = None,
    ) -> dict:
        """Send a new email; it is stored in the 'sent' folder."""
        msg = _new(store.get(ctx), "sent", to, subject, body, cc)
        return {"sent": _summary(msg)}

    @srv.tool()
    async def reply(
        message_id: MessageId,
        body: Annotated[str, arg("Text of the reply.")],
        ctx: Context,
        reply_all: Annotated[bool, arg("Also reply to everyone else on the original To/CC lines.")] = False,
    ) -> dict:
        """Reply to a message (subject gets 'Re:'); the reply joins the same thread and goes to 'sent'."""
        st = store.get(ctx)
        orig = lookup(st.messages, message_id, "message id")
        if orig["folder"] == "drafts":
            raise EnvError(f"{orig['id']} is a draft; use send_draft to send it")
        to = [orig["from"]] if orig["from"] != OWNER["email"] else list(orig["to"])
        cc = [a for a in orig["to"] + orig["cc"] if a != OWNER["email"] and a not in to] if reply_all else []
        subj = orig["subject"] if orig["subject"].lower().startswith("re:") else f"Re: {orig['subject']}"
        msg = _new(st, "sent", to, subj, body, cc, thread=orig["thread_id"], reply_to=orig["id"])
        return {"sent": _summary(msg)}

    @srv.tool()
    async def forward(
        message_id: MessageId,
        to: Recipients,
        ctx: Context,
        note: Annotated[str, arg("Optional text placed above the forwarded message.")] = "",
    ) -> dict:
        """Forward a message to other people (subject gets 'Fwd:'); the copy goes to 'sent'."""
        st = store.get(ctx)
        orig = lookup(st.messages, message_id, "message id")
        body = f"{note}\n\n---------- Forwarded message ----------\nFrom: {orig['from']}\nDate: {orig['date']}\nSubject: {orig['subject']}\n\n{orig['body']}"
        msg = _new(st, "sent", to, f"Fwd: {orig['subject']}", body.lstrip())
        return {"sent": _summary(msg)}

    @srv.tool()
    async def mark_read(
        message_id: MessageId,
        ctx: Context,
        read: Annotated[bool, arg("True marks as read, False as unread.")] = True,
    ) -> dict:
        """Mark a message as read or unread."""
        m = lookup(store.get(ctx).messages, message_id, "message id")
        m["read"] = read
        return {"id": m["id"], "read": m["read"]}

    @srv.tool()
    async def move_message(
        message_id: MessageId,
        folder: Annotated[str, arg("Destination folder: inbox, archive or trash.")],
        ctx: Context,
    ) -> dict:
        """Move a message to another folder (e.g. archive it)."""
        m = lookup(store.get(ctx).messages, message_id, "message id")
        dest = one_of(folder, ["inbox", "archive", "trash"], "destination folder")
        if m["folder"] in ("sent", "drafts") and dest == "inbox":
            raise EnvError(f"{m['id']} is in '{m['folder']}' and cannot be moved to inbox; valid: archive, trash")
        src, m["folder"] = m["folder"], dest
        return {"id": m["id"], "from_folder": src, "folder": dest}

    @srv.tool()
    async def delete_message(message_id: MessageId, ctx: Context) -> dict:
        """Delete a message: moves it to trash, or removes it for good if it is already in trash."""
        st = store.get(ctx)
        m = lookup(st.messages, message_id, "message id")
        if m["folder"] == "trash":
            del st.messages[m["id"]]
            return {"id": m["id"], "deleted_permanently": True}
        m["folder"] = "trash"
        return {"id": m["id"], "folder": "trash", "deleted_permanently": False}

    @srv.tool()
    async def create_draft(
        to: Recipients,
        subject: Annotated[str, arg("Subject line.", min_length=1, max_length=200)],
        body: Annotated[str, arg("Plain-text body.")],
        ctx: Context,
    ) -> dict:
        """Save an email as a draft in the 'drafts' folder without sending it."""
        msg = _new(store.get(ctx), "drafts", to, subject, body)
        return {"draft": _summary(msg)}

    @srv.tool()
    async def send_draft(
        draft_id: Annotated[str, arg("Id of a message in the drafts folder, e.g. 'm12'.")],
        ctx: Context,
    ) -> dict:
        """Send a previously saved draft (it moves from 'drafts' to 'sent')."""
        st = store.get(ctx)
        m = lookup(st.messages, draft_id, "message id")
        if m["folder"] != "drafts":
            drafts = [x["id"] for x in st.messages.values() if x["folder"] == "drafts"]
            raise EnvError(
                f"{m['id']} is not a draft (it is in '{m['folder']}'); drafts: {', '.join(drafts) or 'none'}"
            )
        m["folder"], m["date"] = "sent", st.stamp()
        return {"sent": _summary(m)}

    @srv.tool()
    async def add_label(
        message_id: MessageId,
        label: Annotated[
            str, arg("Label to attach; new labels are created on first use.", min_length=1, max_length=40)
        ],
        ctx: Context,
    ) -> dict:
        """Attach a label (tag) to a message."""
        st = store.get(ctx)
        m = lookup(st.messages, message_id, "message id")
        lab = label.strip().lower()
        if lab not in st.labels:
            st.labels.append(lab)
        if lab not in m["labels"]:
            m["labels"].append(lab)
        return {"id": m["id"], "labels": m["labels"]}

    @srv.tool()
    async def list_labels(ctx: Context) -> dict:
        """List all labels with the number of messages carrying each."""
        st = store.get(ctx)
        return {
            "labels": [
                {"name": lab, "count": sum(lab in m["labels"] for m in st.messages.values())} for lab in st.labels
            ]
        }

    return srv


if __name__ == "__main__":
    main(build)
