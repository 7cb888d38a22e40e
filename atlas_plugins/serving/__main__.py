"""``python -m atlas_plugins.serving``: serve a local policy as a recording OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    """``python -m atlas_plugins.serving [--model PATH] [--host H] [--port P]`` (also ``python -m atlas_plugins.policy.serve``)."""
    parser = argparse.ArgumentParser(
        prog="python -m atlas_plugins.serving", description="Serve a local policy as an OpenAI-compatible endpoint."
    )
    parser.add_argument("--model", default=None, help="model path or hub id (default: the embedded SmolLM2)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-stream", action="store_true", help="refuse stream=true requests")
    args = parser.parse_args(argv)
    from atlas_plugins.policy.transformers_policy import TransformersPolicy
    from atlas_plugins.serving.server import PolicyServer

    srv = PolicyServer(
        TransformersPolicy(args.model, device=args.device), args.host, args.port, streaming=not args.no_stream
    )
    print(f"serving {srv.model_name} at {srv.base_url}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv._httpd.server_close()


if __name__ == "__main__":
    main()
