"""Notes server: notes in notebooks with tags, pinning and archiving."""

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
    lookup,
    main,
    new_server,
    rng_for,
)
from ._fixtures import people

NoteId = Annotated[str, arg("Note id, e.g. 'n2' (from list_items or search).")]
TagArg = Annotated[
    str, arg("Tag name, e.g. 'ideas' (lowercase, no spaces).", min_length=1, max_length=30, pattern=r"^[A-Za-z0-9_-]+$")
]


@dataclass
class NotesState:
    notes: dict[str, dict[str, Any]]
    notebooks: list[str]
    ids: Ids = field(default_factory=Ids)
    clock: int = 0

    def stamp(self) -> str:
        self.clock += 1
        return (NOW + timedelta(minutes=self.clock)).strftime("%Y-%m-%d %H:%M")


def initial_state(seed: int, episode: str = "default") -> NotesState:
    rng = rng_for("notes", seed)
    p1, p2 = rng.sample(people(seed), 2)
    st = NotesState(notes={}, notebooks=["Personal", "Work", "Recipes", "Travel"])
    seeds = [
        ("Grocery list", "Personal", "- oat milk\n- eggs\n- spinach\n- coffee beans\n- lemons", ["shopping"]),
        (
            "Q2 roadmap ideas",
            "Work",
            f"1. Self-serve onboarding\n2. Usage dashboard ({p1['first_name']} to scope)\n3. SSO for enterprise",
            ["ideas", "planning"],
        ),
        (
            "Banana bread",
            "Recipes",
            "3 ripe bananas, 75 g butter, 150 g sugar, 1 egg, 190 g flour, 1 tsp baking soda. 175 C for 60 min.",
            ["baking"],
        ),
        (
            "London trip packing",
            "Travel",
            "passport, adapter (UK plug), rain jacket, charger, conference badge",
            ["packing"],
        ),
        (
            f"Call notes: {p2['name']}",
            "Work",
            f"{p2['first_name']} wants a proposal by Friday. Budget approx ${rng.randint(20, 90)}k. Follow up Tuesday.",
            ["clients"],
        ),
        (
            "Book recommendations",
            "Personal",
            "The Pragmatic Planner; A Brief History of Maps; Cooking for Two",
            ["reading"],
        ),
    ]
    for n, (title, nb, body, tags) in enumerate(seeds):
        nid = st.ids.new("n")
        when = (NOW - timedelta(days=len(seeds) - n, hours=rng.randint(0, 10))).strftime("%Y-%m-%d %H:%M")
        st.notes[nid] = {
            "id": nid,
            "title": title,
            "notebook": nb,
            "body": body,
            "tags": tags,
            "pinned": n == 1,
            "archived": False,
            "created": when,
            "updated": when,
        }
    return st


def _card(n: dict[str, Any]) -> dict[str, Any]:
    return {k: n[k] for k in ("id", "title", "notebook", "tags", "pinned", "archived", "updated")}


def _order(ns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Pinned first, then most recently updated (sorts are stable).
    ns = sorted(ns, key=lambda n: (n["updated"], int(n["id"][1:])), reverse=True)
    return sorted(ns, key=lambda n: not n["pinned"])


def build(seed: int = 0) -> EnvServer:
    srv = new_server("notes", "Note-taking app: notebooks, tags, pinning, archiving and full-text search.")
    store: EpisodeStore[NotesState] = EpisodeStore(initial_state, seed)

    def nb_name(st: NotesState, notebook: str, create: bool = False) -> str:
        for nb in st.notebooks:
            if nb.lower() == notebook.strip().lower():
                return nb
        if create and notebook.strip():
            st.notebooks.append(notebook.strip())
            return notebook.strip()
        raise EnvError(f"unknown notebook '{notebook}'; notebooks: {', '.join(st.notebooks)}")

    @srv.tool()
    async def create_note(
        title: Annotated[str, arg("Note title.", min_length=1, max_length=150)],
        body: Annotated[str, arg("Note text (plain text or Markdown).")],
        ctx: Context,
        notebook: Annotated[str, arg("Notebook to file it in; a new notebook is created if needed.")] = "Personal",
        tags: Annotated[list[str] | None, arg("Tags, e.g. ['ideas', 'urgent'].")] = None,
    ) -> dict:
        """Create a new note and return its id."""
        st = store.get(ctx)
        nid = st.ids.new("n")
        now = st.stamp()
        clean = sorted({t.strip().lower() for t in tags or [] if t.strip()})
        st.notes[nid] = {
            "id": nid,
            "title": title.strip(),
            "notebook": nb_name(st, notebook, create=True),
            "body": body,
            "tags": clean,
            "pinned": False,
            "archived": False,
            "created": now,
            "updated": now,
        }
        return {"created": dict(st.notes[nid])}

    @srv.tool()
    async def list_items(
        ctx: Context,
        notebook: Annotated[str | None, arg("Only notes in this notebook.")] = None,
        tag: Annotated[str | None, arg("Only notes with this tag.")] = None,
        include_archived: Annotated[bool, arg("Also list archived notes.")] = False,
    ) -> dict:
        """List notes (pinned first, then most recently updated) without their bodies."""
        st = store.get(ctx)
        nb = nb_name(st, notebook) if notebook else None
        ns = [
            n
            for n in st.notes.values()
            if (nb is None or n["notebook"] == nb)
            and (tag is None or tag.lower() in n["tags"])
            and (include_archived or not n["archived"])
        ]
        return {"total": len(ns), "notes": [_card(n) for n in _order(ns)]}

    @srv.tool()
    async def get_details(note_id: NoteId, ctx: Context) -> dict:
        """Read a note in full: title, body, notebook, tags, timestamps."""
        return dict(lookup(store.get(ctx).notes, note_id, "note id"))

    @srv.tool()
    async def update_note(
        note_id: NoteId,
        ctx: Context,
        title: Annotated[str | None, arg("New title (omit to keep).")] = None,
        body: Annotated[str | None, arg("New body replacing the old one (omit to keep).")] = None,
    ) -> dict:
        """Replace a note's title and/or body."""
        st = store.get(ctx)
        n = lookup(st.notes, note_id, "note id")
        if title is None and body is None:
            raise EnvError("nothing to change: give a new title and/or body")
        if title is not None:
            n["title"] = title.strip() or n["title"]
        if body is not None:
            n["body"] = body
        n["updated"] = st.stamp()
        return {"updated": dict(n)}

    @srv.tool()
    async def append_to_note(
        note_id: NoteId,
        text: Annotated[str, arg("Text to add on a new line at the end of the note.", min_length=1)],
        ctx: Context,
    ) -> dict:
        """Add a line of text to the end of a note."""
        st = store.get(ctx)
        n = lookup(st.notes, note_id, "note id")
        n["body"] = f"{n['body']}\n{text}" if n["body"] else text
        n["updated"] = st.stamp()
        return {"id": n["id"], "body": n["body"]}

    @srv.tool()
    async def delete_note(note_id: NoteId, ctx: Context) -> dict:
        """Delete a note permanently (use archive_note to hide it instead)."""
        st = store.get(ctx)
        n = lookup(st.notes, note_id, "note id")
        del st.notes[n["id"]]
        return {"deleted": n["id"], "title": n["title"]}

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Words to find in titles and bodies; all must match.", min_length=1)],
        ctx: Context,
        include_archived: Annotated[bool, arg("Also search archived notes.")] = False,
    ) -> dict:
        """Full-text search over notes; returns matching notes with a snippet."""
        st = store.get(ctx)
        words = query.lower().split()
        hits = [
            n
            for n in st.notes.values()
            if (include_archived or not n["archived"])
            and all(w in f"{n['title']} {n['body']} {' '.join(n['tags'])}".lower() for w in words)
        ]
        return {
            "query": query,
            "total": len(hits),
            "notes": [_card(n) | {"snippet": " ".join(n["body"].split())[:100]} for n in _order(hits)],
        }

    @srv.tool()
    async def add_tag(note_id: NoteId, tag: TagArg, ctx: Context) -> dict:
        """Add a tag to a note."""
        n = lookup(store.get(ctx).notes, note_id, "note id")
        t = tag.lower()
        if t not in n["tags"]:
            n["tags"] = sorted(n["tags"] + [t])
        return {"id": n["id"], "tags": n["tags"]}

    @srv.tool()
    async def remove_tag(note_id: NoteId, tag: TagArg, ctx: Context) -> dict:
        """Remove a tag from a note."""
        n = lookup(store.get(ctx).notes, note_id, "note id")
        if tag.lower() not in n["tags"]:
            raise EnvError(f"{n['id']} has no tag '{tag}'; its tags: {', '.join(n['tags']) or 'none'}")
        n["tags"].remove(tag.lower())
        return {"id": n["id"], "tags": n["tags"]}

    @srv.tool()
    async def list_tags(ctx: Context) -> dict:
        """All tags in use with how many notes carry each."""
        counts: dict[str, int] = {}
        for n in store.get(ctx).notes.values():
            for t in n["tags"]:
                counts[t] = counts.get(t, 0) + 1
        return {"tags": [{"tag": t, "notes": c} for t, c in sorted(counts.items())]}

    @srv.tool()
    async def list_notebooks(ctx: Context) -> dict:
        """List notebooks with their note counts."""
        st = store.get(ctx)
        return {
            "notebooks": [
                {"name": nb, "notes": sum(n["notebook"] == nb for n in st.notes.values())} for nb in st.notebooks
            ]
        }

    @srv.tool()
    async def move_to_notebook(
        note_id: NoteId,
        notebook: Annotated[
            str, arg("Destination notebook (created if it does not exist).", min_length=1, max_length=60)
        ],
        ctx: Context,
    ) -> dict:
        """Move a note into another notebook."""
        st = store.get(ctx)
        n = lookup(st.notes, note_id, "note id")
        n["notebook"] = nb_name(st, notebook, create=True)
        n["updated"] = st.stamp()
        return {"id": n["id"], "notebook": n["notebook"]}

    @srv.tool()
    async def pin_note(
        note_id: NoteId,
        ctx: Context,
        pinned: Annotated[bool, arg("True pins the note to the top; False unpins it.")] = True,
    ) -> dict:
        """Pin or unpin a note."""
        n = lookup(store.get(ctx).notes, note_id, "note id")
        n["pinned"] = pinned
        return {"id": n["id"], "pinned": pinned}

    @srv.tool()
    async def archive_note(
        note_id: NoteId,
        ctx: Context,
        archived: Annotated[bool, arg("True archives (hides) the note; False restores it.")] = True,
    ) -> dict:
        """Archive a note (hidden from lists and search by default) or restore it."""
        n = lookup(store.get(ctx).notes, note_id, "note id")
        n["archived"] = archived
        if archived:
            n["pinned"] = False
        return {"id": n["id"], "archived": archived}

    return srv


if __name__ == "__main__":
    main(build)
