"""A third-party rubric provider for atlas-plugins: ``keyword``.

Keywords come from ``task.metadata["keywords"]``; without them, the capitalised words and
numbers of the prompt are used. Each keyword becomes an exact ``answer_contains`` check.
"""

from __future__ import annotations

import re
from typing import Any

import atlas_plugins as atlas


class KeywordProvider:
    name = "keyword"

    def __init__(self, weight: int = 8, max_keywords: int = 5) -> None:
        self.weight = weight
        self.max_keywords = max_keywords

    def rubric_for(self, task: Any) -> "atlas.Rubric":
        t = task if isinstance(task, atlas.Task) else atlas.Task.model_validate(task)
        words = t.metadata.get("keywords") or re.findall(r"\b(?:[A-Z][a-zA-Z]+|\d+(?:\.\d+)?)\b", t.prompt)[1:]
        words = list(dict.fromkeys(str(w) for w in words))[: self.max_keywords]
        criteria = [
            {"name": f"Mentions {w}", "category": "TF", "weight": self.weight,
             "check": {"type": "answer_contains", "values": [w]}}
            for w in words
        ]
        criteria.append({"name": "Answers concisely", "category": "TF", "weight": 3,
                         "description": "The final answer is short and to the point."})
        return atlas.Rubric.from_dict({"criteria": criteria, "task_id": t.id, "source": "keyword"})


@atlas.hookimpl
def atlas_register_rubric_providers(register):  # type: ignore[no-untyped-def]
    register("keyword", KeywordProvider)
