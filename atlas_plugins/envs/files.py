"""Files server: a sandboxed workspace directory per episode, seeded with a few project files.

Root: ``$ATLAS_ENV_WORKDIR/<episode>`` (or a per-process temp dir). The first time this process
sees an episode its directory is wiped and re-seeded, so results do not depend on leftovers.
Paths are relative to the episode root; absolute paths, '..' and symlinks leading out are refused.
"""

import fnmatch
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from ._base import (
    Context,
    EnvError,
    EnvServer,
    EpisodeStore,
    arg,
    episode_dirname,
    main,
    new_server,
    rel,
    rng_for,
    safe_path,
    workdir_root,
)
from ._fixtures import people

MAX_FILE_CHARS = 1_000_000
READ_LIMIT_CHARS = 20_000
# One episode's workspace quota: what copy/write/append/mkdir may grow it to (copying a file onto
# itself repeatedly otherwise doubles it per call).
MAX_WORKSPACE_BYTES = 8 * 1024 * 1024
MAX_WORKSPACE_ENTRIES = 2000

PathArg = Annotated[str, arg("Path relative to the workspace root, e.g. 'notes/todo.txt' ('.' is the root).")]


@dataclass
class FilesState:
    root: Path


def seed_files(seed: int) -> dict[str, str]:
    """The seeded workspace: relative path -> text content ('' with a trailing '/' = empty dir)."""
    rng = rng_for("files", seed)
    ppl = people(seed)
    a, b, c = rng.sample(ppl, 3)
    regions = ["North", "South", "East", "West"]
    rows = ["month,region,units,revenue"]
    for month in ("2026-01", "2026-02"):
        for r in regions:
            units = rng.randint(80, 400)
            rows.append(f"{month},{r},{units},{units * rng.choice([19, 24, 29])}")
    customers = [
        {
            "id": f"cust-{i}",
            "name": p["company"],
            "contact": p["email"],
            "tier": rng.choice(["gold", "silver", "bronze"]),
        }
        for i, p in enumerate(rng.sample(ppl, 5), start=1)
    ]
    log = []
    for i in range(20):
        lvl = rng.choices(["INFO", "WARN", "ERROR"], [14, 4, 2])[0]
        msg = {
            "INFO": "request served in {}ms",
            "WARN": "slow query took {}ms",
            "ERROR": "upstream timeout after {}ms",
        }[lvl]
        log.append(f"2026-03-01 {8 + i // 4:02d}:{(i * 7) % 60:02d}:00 {lvl} {msg.format(rng.randint(20, 3000))}")
    return {
        "README.md": "# Atlas project\n\nInternal dashboard for regional sales.\n\n- data/: raw exports\n- notes/: meeting notes\n- reports/: generated reports\n",
        "notes/meeting-2026-02-27.md": (
            "# Weekly sync 2026-02-27\n\nAttendees: "
            f"{a['name']}, {b['name']}, {c['name']}\n\n## Action items\n"
            f"- [ ] {a['first_name']}: finalize the Q1 sales report by 2026-03-06\n"
            f"- [ ] {b['first_name']}: fix the upstream timeout errors in app.log\n"
            f"- [x] {c['first_name']}: renew the analytics license\n"
        ),
        "notes/todo.txt": "buy printer paper\nbook flights for the April conference\nreview contract draft\ncall the dentist\nupdate README\n",
        "data/sales_q1.csv": "\n".join(rows) + "\n",
        "data/customers.json": json.dumps(customers, indent=2) + "\n",
        "config/settings.ini": f"[app]\nname = atlas-dashboard\nport = {rng.choice([8080, 8000, 5000])}\ndebug = false\n\n[db]\nhost = localhost\npool_size = {rng.randint(4, 16)}\n",
        "logs/app.log": "\n".join(log) + "\n",
        "reports/": "",
    }


def initial_state(seed: int, episode: str = "default") -> FilesState:
    root = workdir_root() / episode_dirname(episode)
    if root.is_symlink() or root.is_file():
        root.unlink()
    elif root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for relpath, content in seed_files(seed).items():
        p = root / relpath
        if relpath.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content, encoding="utf-8")
    return FilesState(root=root.resolve())


def _kind(p: Path) -> str:
    return "symlink" if p.is_symlink() else "directory" if p.is_dir() else "file"


def _entry(root: Path, p: Path) -> dict[str, Any]:
    kind = _kind(p)
    e: dict[str, Any] = {"path": p.relative_to(root).as_posix(), "name": p.name, "type": kind}
    if kind == "file":
        e["size_bytes"] = p.stat().st_size
    elif kind == "directory":
        e["entries"] = sum(1 for _ in p.iterdir())
    return e


def _walk(p: Path) -> list[Path]:
    """All descendants, sorted, without following symlinked directories."""
    out: list[Path] = []
    for child in sorted(p.iterdir(), key=lambda x: x.name):
        out.append(child)
        if child.is_dir() and not child.is_symlink():
            out.extend(_walk(child))
    return out


def _read_text(p: Path, user_path: str) -> str:
    if not p.exists():
        raise EnvError(f"no such file '{user_path}'; use list_items to see what exists")
    if p.is_dir():
        raise EnvError(f"'{user_path}' is a directory, not a file; use list_items on it")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EnvError(f"'{user_path}' is not a UTF-8 text file") from None


def _check_size(content: str) -> None:
    if len(content) > MAX_FILE_CHARS:
        raise EnvError(f"content is {len(content)} characters; the limit per file is {MAX_FILE_CHARS}")


def _usage(path: Path) -> tuple[int, int]:
    """(bytes, entries) under ``path`` (itself included), symlinks not followed."""
    if not path.exists() and not path.is_symlink():
        return 0, 0
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size, 1
    size, entries = 0, 1
    for x in path.rglob("*"):
        entries += 1
        if x.is_file() and not x.is_symlink():
            size += x.stat().st_size
    return size, entries


def _ensure_room(root: Path, add_bytes: int, add_entries: int = 0) -> None:
    """Refuse a change that would take the workspace over its quota."""
    if add_bytes <= 0 and add_entries <= 0:
        return
    size, entries = _usage(root)
    if size + add_bytes > MAX_WORKSPACE_BYTES or entries + add_entries > MAX_WORKSPACE_ENTRIES:
        raise EnvError(
            f"the workspace is limited to {MAX_WORKSPACE_BYTES // (1024 * 1024)} MiB and "
            f"{MAX_WORKSPACE_ENTRIES} entries (now {size} bytes, {entries} entries); delete something first"
        )


def build(seed: int = 0) -> EnvServer:
    srv = new_server("files", "A private workspace folder: list, read, write, move, copy, search and grep text files.")
    store: EpisodeStore[FilesState] = EpisodeStore(initial_state, seed)

    def resolve(ctx: Context, path: str, what: str = "path") -> tuple[Path, Path]:
        root = store.get(ctx).root
        return root, safe_path(root, path, what)

    @srv.tool()
    async def list_items(
        ctx: Context,
        path: PathArg = ".",
        recursive: Annotated[bool, arg("Also list everything below sub-directories.")] = False,
    ) -> dict:
        """List the files and folders in a directory (name, type, size in bytes)."""
        root, p = resolve(ctx, path)
        if not p.exists():
            raise EnvError(f"no such directory '{path}'; use list_items with path '.' to see the root")
        if not p.is_dir():
            raise EnvError(f"'{path}' is a file, not a directory; use read_file or get_details")
        children = _walk(p) if recursive else sorted(p.iterdir(), key=lambda x: x.name)
        return {"path": rel(root, p), "count": len(children), "items": [_entry(root, c) for c in children]}

    @srv.tool()
    async def read_file(
        path: PathArg,
        ctx: Context,
        start_line: Annotated[int, arg("First line to return (1-based).", ge=1)] = 1,
        max_lines: Annotated[int, arg("Maximum number of lines to return.", ge=1, le=5000)] = 400,
    ) -> dict:
        """Read a text file (or a range of its lines)."""
        root, p = resolve(ctx, path)
        text = _read_text(p, path)
        lines = text.splitlines()
        chunk = lines[start_line - 1 : start_line - 1 + max_lines]
        content = "\n".join(chunk)
        truncated = len(content) > READ_LIMIT_CHARS or start_line - 1 + max_lines < len(lines)
        return {
            "path": rel(root, p),
            "total_lines": len(lines),
            "start_line": start_line,
            "content": content[:READ_LIMIT_CHARS],
            "truncated": truncated,
        }

    @srv.tool()
    async def write_file(
        path: PathArg,
        content: Annotated[str, arg("Full text to write (UTF-8).")],
        ctx: Context,
        overwrite: Annotated[bool, arg("Allow replacing an existing file.")] = True,
    ) -> dict:
        """Create or overwrite a text file; missing parent folders are created."""
        root, p = resolve(ctx, path)
        _check_size(content)
        if p == root or p.is_dir():
            raise EnvError(f"'{path}' is a directory; give a file path such as '{path.rstrip('/')}/new.txt'")
        existed = p.exists()
        if existed and not overwrite:
            raise EnvError(f"'{path}' already exists; pass overwrite=true to replace it or use append_file")
        _ensure_room(root, len(content.encode("utf-8")) - (p.stat().st_size if existed else 0), 0 if existed else 1)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content, encoding="utf-8")
        return {"path": rel(root, p), "size_bytes": p.stat().st_size, "created": not existed}

    @srv.tool()
    async def append_file(
        path: PathArg,
        content: Annotated[str, arg("Text to add at the end of the file (no newline is added for you).")],
        ctx: Context,
    ) -> dict:
        """Append text to the end of a file (creates the file if missing)."""
        root, p = resolve(ctx, path)
        if p.is_dir():
            raise EnvError(f"'{path}' is a directory, not a file")
        old = p.read_text(encoding="utf-8") if p.exists() else ""
        _check_size(old + content)
        _ensure_room(root, len(content.encode("utf-8")), 0 if p.exists() else 1)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8") as fh:
            fh.write(content)
        return {"path": rel(root, p), "size_bytes": p.stat().st_size}

    @srv.tool()
    async def delete(
        path: PathArg,
        ctx: Context,
        recursive: Annotated[bool, arg("Required to delete a non-empty directory.")] = False,
    ) -> dict:
        """Delete a file or a directory."""
        root, p = resolve(ctx, path)
        if p == root:
            raise EnvError("refusing to delete the workspace root")
        if not p.exists() and not p.is_symlink():
            raise EnvError(f"no such file or directory '{path}'")
        if p.is_dir() and not p.is_symlink():
            if any(p.iterdir()) and not recursive:
                raise EnvError(f"directory '{path}' is not empty; pass recursive=true to delete it with its contents")
            shutil.rmtree(p)
        else:
            p.unlink()
        return {"deleted": rel(root, p)}

    def _transfer(ctx: Context, source: str, destination: str, overwrite: bool, op: str) -> dict:
        root, src = resolve(ctx, source, "source")
        _, dst = resolve(ctx, destination, "destination")
        if src == root:
            raise EnvError(f"cannot {op} the workspace root")
        if not src.exists():
            raise EnvError(f"no such file or directory '{source}'")
        if dst.is_dir() and not dst.is_symlink():
            dst = dst / src.name  # like `mv a dir/`
        if dst == src:
            raise EnvError("source and destination are the same")
        if src.is_dir() and dst.is_relative_to(src):
            raise EnvError(f"cannot {op} a directory into itself")
        if dst.exists():
            if not overwrite:
                raise EnvError(f"destination '{rel(root, dst)}' exists; pass overwrite=true to replace it")
            if dst.is_dir():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        if op == "copy":
            _ensure_room(root, *_usage(src))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if op == "move":
            shutil.move(str(src), str(dst))
        elif src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copyfile(src, dst)
        return {"moved" if op == "move" else "copied": True, "source": rel(root, src), "destination": rel(root, dst)}

    @srv.tool()
    async def move(
        source: Annotated[str, arg("Existing file or folder (relative path).")],
        destination: Annotated[str, arg("New path, or an existing folder to move into.")],
        ctx: Context,
        overwrite: Annotated[bool, arg("Replace the destination if it exists.")] = False,
    ) -> dict:
        """Move or rename a file or folder."""
        return _transfer(ctx, source, destination, overwrite, "move")

    @srv.tool()
    async def copy(
        source: Annotated[str, arg("Existing file or folder (relative path).")],
        destination: Annotated[str, arg("Path of the copy, or an existing folder to copy into.")],
        ctx: Context,
        overwrite: Annotated[bool, arg("Replace the destination if it exists.")] = False,
    ) -> dict:
        """Copy a file or a whole folder."""
        return _transfer(ctx, source, destination, overwrite, "copy")

    @srv.tool()
    async def make_directory(path: PathArg, ctx: Context) -> dict:
        """Create a folder (and any missing parents)."""
        root, p = resolve(ctx, path)
        if p.exists() and not p.is_dir():
            raise EnvError(f"'{path}' exists and is a file")
        existed = p.exists()
        _ensure_room(root, 0, 0 if existed else len(Path(path).parts))
        p.mkdir(parents=True, exist_ok=True)
        return {"path": rel(root, p), "created": not existed}

    @srv.tool()
    async def get_details(path: PathArg, ctx: Context) -> dict:
        """Metadata of a file or folder: type, size, line and word counts, SHA-256 of the content."""
        root, p = resolve(ctx, path)
        if not p.exists():
            raise EnvError(f"no such file or directory '{path}'")
        info: dict[str, Any] = {"path": rel(root, p), "type": _kind(p)}
        if p.is_dir():
            files = [x for x in _walk(p) if x.is_file() and not x.is_symlink()]
            info |= {
                "entries": sum(1 for _ in p.iterdir()),
                "files_below": len(files),
                "size_bytes": sum(x.stat().st_size for x in files),
            }
        else:
            data = p.read_bytes()
            text = data.decode("utf-8", errors="replace")
            info |= {
                "size_bytes": len(data),
                "lines": len(text.splitlines()),
                "words": len(text.split()),
                "extension": p.suffix,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        return info

    @srv.tool()
    async def search(
        pattern: Annotated[
            str, arg("File-name pattern with * and ? wildcards, e.g. '*.csv' or 'meeting*'.", min_length=1)
        ],
        ctx: Context,
        path: PathArg = ".",
    ) -> dict:
        """Find files and folders by name pattern anywhere below a folder."""
        root, p = resolve(ctx, path)
        if not p.is_dir():
            raise EnvError(f"'{path}' is not a directory")
        hits = [x.relative_to(root).as_posix() for x in _walk(p) if fnmatch.fnmatch(x.name.lower(), pattern.lower())]
        return {"pattern": pattern, "count": len(hits), "matches": hits}

    @srv.tool()
    async def grep(
        text: Annotated[str, arg("Text to look for inside files (plain substring, not a regex).", min_length=1)],
        ctx: Context,
        path: PathArg = ".",
        case_sensitive: Annotated[bool, arg("Match upper/lower case exactly.")] = False,
        max_results: Annotated[int, arg("Stop after this many matching lines.", ge=1, le=500)] = 50,
    ) -> dict:
        """Search inside text files for lines containing a string; returns file, line number and line."""
        root, p = resolve(ctx, path)
        targets = (
            [p] if p.is_file() else [x for x in _walk(p) if x.is_file() and not x.is_symlink()] if p.is_dir() else None
        )
        if targets is None:
            raise EnvError(f"no such file or directory '{path}'")
        needle = text if case_sensitive else text.lower()
        hits = []
        for f in targets:
            try:
                lines = f.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                continue
            for n, line in enumerate(lines, start=1):
                if needle in (line if case_sensitive else line.lower()):
                    hits.append({"path": f.relative_to(root).as_posix(), "line": n, "text": line[:300]})
        return {"text": text, "total_matches": len(hits), "matches": hits[:max_results]}

    @srv.tool()
    async def replace_in_file(
        path: PathArg,
        old: Annotated[str, arg("Exact text to replace.", min_length=1)],
        new: Annotated[str, arg("Replacement text.")],
        ctx: Context,
        count: Annotated[int, arg("Replace at most this many occurrences; 0 means all.", ge=0)] = 0,
    ) -> dict:
        """Replace occurrences of a string in a text file."""
        root, p = resolve(ctx, path)
        text = _read_text(p, path)
        found = text.count(old)
        if not found:
            raise EnvError(f"'{old}' does not occur in '{path}'; read_file shows the exact text")
        out = text.replace(old, new, count or -1)
        _check_size(out)
        p.write_text(out, encoding="utf-8")
        return {"path": rel(root, p), "occurrences": found, "replaced": min(found, count) if count else found}

    @srv.tool()
    async def tree(
        ctx: Context,
        path: PathArg = ".",
        max_depth: Annotated[int, arg("How many folder levels to show.", ge=1, le=10)] = 3,
    ) -> dict:
        """Show the folder structure as an indented text tree."""
        root, p = resolve(ctx, path)
        if not p.is_dir():
            raise EnvError(f"'{path}' is not a directory")
        lines = [rel(root, p) + "/"]

        def walk(d: Path, depth: int) -> None:
            for child in sorted(d.iterdir(), key=lambda x: x.name):
                is_dir = child.is_dir() and not child.is_symlink()
                lines.append("  " * depth + child.name + ("/" if is_dir else ""))
                if is_dir and depth < max_depth:
                    walk(child, depth + 1)

        walk(p, 1)
        return {"tree": "\n".join(lines)}

    return srv


if __name__ == "__main__":
    main(build)
