"""Quickstart: the embedded MCP servers, context control and code mode, offline on CPU.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import atlas_plugins as atlas
from atlas_plugins.context.tokens import initial_context_tokens


def main() -> None:
    with atlas.Toolspace.default() as ts:
        print(f"{len(ts.list_tools())} tools on {len(ts.servers)} servers")

        # Errors are values a small model can act on.
        print(ts.call("math", "ad", {"numbers": [1, 2]}).error)
        print(ts.call("math", "add", {"numbers": [1, 2, 3.5]}, episode="demo").content)

        # What each loading policy puts in front of the model before it does anything.
        for name in ("eager", "isl", "itl", "search"):
            tokens = initial_context_tokens(atlas.get_loading_policy(name), ts)
            print(f"{name:>6}: {tokens:6,} initial context tokens")

        # Programmatic tool calling in the bubblewrap sandbox.
        try:
            executor = atlas.get_executor("local")
            with executor.open_session(ts, episode="demo") as code:
                print(code.run("m = MCPServer('math')\nm.get_tools_info(['describe'])").observation())
                print(code.run("m.describe(numbers=[2, 4, 9])['mean']").observation())
        except atlas.AtlasError as exc:  # e.g. bubblewrap is not installed
            print(f"code mode unavailable: {exc}")


if __name__ == "__main__":
    main()
