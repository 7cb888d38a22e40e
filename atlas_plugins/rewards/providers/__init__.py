"""Built-in rubric providers: ``static`` (rubric in the task), ``template`` (from task
metadata, no LLM), ``llm`` (the paper's 12-criterion rubric from any OpenAI-compatible model)."""

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("static", "template", "llm")
