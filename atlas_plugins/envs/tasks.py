"""Tasks server: projects and to-dos with due dates, priorities, assignees, statuses and comments."""

from dataclasses import dataclass, field
from datetime import timedelta
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
    lookup,
    main,
    new_server,
    one_of,
    parse_date,
    rng_for,
)
from ._fixtures import OWNER, people

PRIORITIES = ["low", "normal", "high", "urgent"]
STATUSES = ["todo", "in_progress", "done"]
TaskId = Annotated[str, arg("Task id, e.g. 't4' (from list_items or search).")]


@dataclass
class TasksState:
    tasks: dict[str, dict[str, Any]]
    projects: dict[str, dict[str, Any]]
    members: list[str]
    ids: Ids = field(default_factory=Ids)
    clock: int = 0

    def stamp(self) -> str:
        self.clock += 1
        return (NOW + timedelta(minutes=self.clock)).strftime("%Y-%m-%d %H:%M")


def initial_state(seed: int, episode: str = "default") -> TasksState:
    rng = rng_for("tasks", seed)
    team = rng.sample(people(seed), 4)
    members = [OWNER["email"]] + [p["email"] for p in team]
    st = TasksState(tasks={}, projects={}, members=members)
    for key, name, desc in (
        ("web", "Website relaunch", "New marketing site by end of March"),
        ("q1", "Q1 report", "Quarterly business review"),
        ("home", "Home", "Personal errands"),
    ):
        st.projects[key] = {"id": key, "name": name, "description": desc}
    seeds = [
        ("Draft homepage copy", "web", 3, "high", "in_progress", 1),
        ("Pick hero images", "web", 5, "normal", "todo", 2),
        ("Set up analytics", "web", -2, "high", "todo", 3),
        ("QA mobile layout", "web", 9, "normal", "todo", 4),
        ("Collect regional sales numbers", "q1", -1, "urgent", "in_progress", 0),
        ("Write executive summary", "q1", 4, "high", "todo", 0),
        ("Review budget variance", "q1", 2, "normal", "todo", 1),
        ("Renew passport", "home", 20, "normal", "todo", 0),
        ("Fix leaking tap", "home", -4, "low", "todo", 0),
        ("Book dentist check-up", "home", 6, "low", "done", 0),
    ]
    for title, proj, due, prio, status, who in seeds:
        tid = st.ids.new("t")
        st.tasks[tid] = {
            "id": tid,
            "title": title,
            "project": proj,
            "due": (TODAY + timedelta(days=due + rng.randint(0, 1))).isoformat(),
            "priority": prio,
            "status": status,
            "assignee": members[who],
            "notes": "",
            "comments": [],
            "created": (NOW - timedelta(days=rng.randint(3, 20))).strftime("%Y-%m-%d %H:%M"),
        }
    return st


def _card(t: dict[str, Any]) -> dict[str, Any]:
    return {k: t[k] for k in ("id", "title", "project", "due", "priority", "status", "assignee")}


def build(seed: int = 0) -> EnvServer:
    srv = new_server(
        "tasks", "Task manager: projects, tasks with due dates, priorities, assignees, statuses, comments."
    )
    store: EpisodeStore[TasksState] = EpisodeStore(initial_state, seed)

    def find_project(st: TasksState, value: str) -> str:
        v = value.strip().lower()
        for p in st.projects.values():
            if v in (p["id"], p["name"].lower()):
                return p["id"]
        known = ", ".join(f"{p['id']} ({p['name']})" for p in st.projects.values())
        raise EnvError(f"unknown project '{value}'; projects: {known}")

    def member(st: TasksState, value: str) -> str:
        v = value.strip().lower()
        if v in ("me", "myself", "self"):
            return OWNER["email"]
        for m in st.members:
            if v == m or v == m.split("@")[0] or v == m.split(".")[0]:
                return m
        raise EnvError(f"unknown assignee '{value}'; team members: me, {', '.join(st.members[1:])}")

    @srv.tool()
    async def create_task(
        title: Annotated[str, arg("What needs doing.", min_length=1, max_length=200)],
        ctx: Context,
        project: Annotated[str, arg("Project id or name, e.g. 'web' or 'Website relaunch'.")] = "home",
        due: Annotated[str | None, arg("Due date YYYY-MM-DD or 'today'/'tomorrow'.")] = None,
        priority: Annotated[str, arg(f"Priority: {', '.join(PRIORITIES)}.")] = "normal",
        assignee: Annotated[str, arg("Team member email or 'me'.")] = "me",
        notes: Annotated[str, arg("Optional details.")] = "",
    ) -> dict:
        """Create a task in a project and return it with its new id."""
        st = store.get(ctx)
        tid = st.ids.new("t")
        st.tasks[tid] = {
            "id": tid,
            "title": title.strip(),
            "project": find_project(st, project),
            "due": parse_date(due, "due").isoformat() if due else None,
            "priority": one_of(priority, PRIORITIES, "priority"),
            "status": "todo",
            "assignee": member(st, assignee),
            "notes": notes,
            "comments": [],
            "created": st.stamp(),
        }
        return {"created": dict(st.tasks[tid])}

    @srv.tool()
    async def list_items(
        ctx: Context,
        project: Annotated[str | None, arg("Only tasks in this project.")] = None,
        status: Annotated[
            str | None, arg(f"Only this status: {', '.join(STATUSES)}. Default: everything not done.")
        ] = None,
        assignee: Annotated[str | None, arg("Only tasks assigned to this email (or 'me').")] = None,
        due_before: Annotated[str | None, arg("Only tasks due on or before this date (YYYY-MM-DD).")] = None,
    ) -> dict:
        """List tasks sorted by due date then priority (open tasks unless a status is given)."""
        st = store.get(ctx)
        pid = find_project(st, project) if project else None
        s = one_of(status, STATUSES, "status") if status else None
        who = member(st, assignee) if assignee else None
        limit = parse_date(due_before, "due_before").isoformat() if due_before else None
        ts = [
            t
            for t in st.tasks.values()
            if (pid is None or t["project"] == pid)
            and (t["status"] == s if s else t["status"] != "done")
            and (who is None or t["assignee"] == who)
            and (limit is None or (t["due"] is not None and t["due"] <= limit))
        ]
        ts.sort(key=lambda t: (t["due"] or "9999", -PRIORITIES.index(t["priority"]), int(t["id"][1:])))
        return {"total": len(ts), "tasks": [_card(t) for t in ts]}

    @srv.tool()
    async def get_details(task_id: TaskId, ctx: Context) -> dict:
        """Everything about a task, including notes and comments."""
        return dict(lookup(store.get(ctx).tasks, task_id, "task id"))

    @srv.tool()
    async def update_task(
        task_id: TaskId,
        ctx: Context,
        title: Annotated[str | None, arg("New title (omit to keep).")] = None,
        due: Annotated[str | None, arg("New due date YYYY-MM-DD (omit to keep).")] = None,
        priority: Annotated[str | None, arg(f"New priority: {', '.join(PRIORITIES)} (omit to keep).")] = None,
        status: Annotated[str | None, arg(f"New status: {', '.join(STATUSES)} (omit to keep).")] = None,
        project: Annotated[str | None, arg("Move to this project (omit to keep).")] = None,
        notes: Annotated[str | None, arg("Replace the notes (omit to keep).")] = None,
    ) -> dict:
        """Change a task's title, due date, priority, status, project or notes."""
        st = store.get(ctx)
        t = lookup(st.tasks, task_id, "task id")
        before = dict(t)
        if title is not None:
            t["title"] = title.strip() or t["title"]
        if due is not None:
            t["due"] = parse_date(due, "due").isoformat()
        if priority is not None:
            t["priority"] = one_of(priority, PRIORITIES, "priority")
        if status is not None:
            t["status"] = one_of(status, STATUSES, "status")
        if project is not None:
            t["project"] = find_project(st, project)
        if notes is not None:
            t["notes"] = notes
        return {"updated": _card(t), "changed_fields": sorted(k for k in t if t[k] != before[k])}

    @srv.tool()
    async def complete_task(task_id: TaskId, ctx: Context) -> dict:
        """Mark a task as done."""
        t = lookup(store.get(ctx).tasks, task_id, "task id")
        if t["status"] == "done":
            raise EnvError(f"{t['id']} is already done")
        t["status"] = "done"
        return {"id": t["id"], "status": "done"}

    @srv.tool()
    async def delete_task(task_id: TaskId, ctx: Context) -> dict:
        """Delete a task permanently."""
        st = store.get(ctx)
        t = lookup(st.tasks, task_id, "task id")
        del st.tasks[t["id"]]
        return {"deleted": t["id"], "title": t["title"]}

    @srv.tool()
    async def search(
        query: Annotated[str, arg("Words to find in task titles, notes and comments.", min_length=1)],
        ctx: Context,
        include_done: Annotated[bool, arg("Also search finished tasks.")] = True,
    ) -> dict:
        """Search tasks by keyword (all words must match)."""
        st = store.get(ctx)
        words = query.lower().split()
        hits = [
            _card(t)
            for t in st.tasks.values()
            if (include_done or t["status"] != "done")
            and all(
                w in f"{t['title']} {t['notes']} {' '.join(c['text'] for c in t['comments'])}".lower() for w in words
            )
        ]
        return {"query": query, "total": len(hits), "tasks": hits}

    @srv.tool()
    async def list_projects(ctx: Context) -> dict:
        """List projects with counts of open and finished tasks."""
        st = store.get(ctx)
        return {
            "projects": [
                p
                | {
                    "open": sum(t["project"] == p["id"] and t["status"] != "done" for t in st.tasks.values()),
                    "done": sum(t["project"] == p["id"] and t["status"] == "done" for t in st.tasks.values()),
                }
                for p in st.projects.values()
            ]
        }

    @srv.tool()
    async def create_project(
        name: Annotated[str, arg("Project name, e.g. 'Kitchen renovation'.", min_length=2, max_length=80)],
        ctx: Context,
        description: Annotated[str, arg("Optional description.")] = "",
    ) -> dict:
        """Create a new project; its id is derived from the name."""
        st = store.get(ctx)
        if any(p["name"].lower() == name.strip().lower() for p in st.projects.values()):
            raise EnvError(f"a project named '{name}' already exists")
        base = "".join(ch for ch in name.lower() if ch.isalnum())[:12] or "project"
        pid, n = base, 2
        while pid in st.projects:
            pid, n = f"{base}{n}", n + 1
        st.projects[pid] = {"id": pid, "name": name.strip(), "description": description}
        return {"created": st.projects[pid]}

    @srv.tool()
    async def add_comment(
        task_id: TaskId,
        text: Annotated[str, arg("Comment text.", min_length=1, max_length=2000)],
        ctx: Context,
    ) -> dict:
        """Add a comment to a task."""
        st = store.get(ctx)
        t = lookup(st.tasks, task_id, "task id")
        t["comments"].append({"author": OWNER["email"], "text": text, "at": st.stamp()})
        return {"id": t["id"], "comments": t["comments"]}

    @srv.tool()
    async def assign_task(
        task_id: TaskId,
        assignee: Annotated[str, arg("Team member email (or first name, or 'me').")],
        ctx: Context,
    ) -> dict:
        """Assign a task to a team member."""
        st = store.get(ctx)
        t = lookup(st.tasks, task_id, "task id")
        t["assignee"] = member(st, assignee)
        return {"id": t["id"], "assignee": t["assignee"]}

    @srv.tool()
    async def list_overdue(ctx: Context) -> dict:
        """Open tasks whose due date is before today (2026-03-02), most overdue first."""
        st = store.get(ctx)
        ts = [t for t in st.tasks.values() if t["status"] != "done" and t["due"] and t["due"] < TODAY.isoformat()]
        ts.sort(key=lambda t: (t["due"], int(t["id"][1:])))
        return {
            "today": TODAY.isoformat(),
            "overdue": [_card(t) | {"days_overdue": (TODAY - TODAY.fromisoformat(t["due"])).days} for t in ts],
        }

    @srv.tool()
    async def list_members(ctx: Context) -> dict:
        """Team members tasks can be assigned to (the first is you)."""
        st = store.get(ctx)
        return {
            "members": [
                {"email": m, "open_tasks": sum(t["assignee"] == m and t["status"] != "done" for t in st.tasks.values())}
                for m in st.members
            ]
        }

    return srv


if __name__ == "__main__":
    main(build)
