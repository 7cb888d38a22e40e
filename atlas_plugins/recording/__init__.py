"""Recording model calls token for token, below the agent, the policy server and the adapters.

* :mod:`atlas_plugins.recording.rendering` — append-only context building on any chat template
  (:class:`~atlas_plugins.recording.rendering.TurnTemplate`);
* :mod:`atlas_plugins.recording.recorder` — :class:`~atlas_plugins.recording.recorder.LLMCall`,
  :func:`~atlas_plugins.recording.recorder.stitch`, :func:`~atlas_plugins.recording.recorder.token_fields`
  and the append-only :class:`~atlas_plugins.recording.recorder.ChatRenderer`;
* :mod:`atlas_plugins.recording.chains` — attributing a server's requests to conversations and rollouts.

Nothing here imports torch; a policy is passed in.
"""
