"""The wire: how text crosses between the model, the tools and the frameworks around them.

One module per concern, each the only copy of its rules:

* :mod:`atlas_plugins.wire.toolcall` — the ``<tool_call>`` format: its tags, the two JSON styles
  of a call, the stop strings, the tolerant parser and the strict one the TRL reward uses;
* :mod:`atlas_plugins.wire.text` — truncation with its marker, "did you mean", name listings,
  one-line summaries;
* :mod:`atlas_plugins.wire.messages` — OpenAI-style chat messages: content parts to text,
  tool-call arguments, comparable message keys.

This package is a leaf: it imports only the standard library (and pydantic, json-repair and
httpx where a module says so), never the rest of ``atlas_plugins`` beyond ``errors`` and
``types``.
"""
