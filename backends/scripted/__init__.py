"""The scripted backend: replies from a YAML script, for deterministic tests of code that calls the API.

`backend` is the backend itself; `script` loads and checks a script (against
`schema.yaml`), `matching` compiles its `match` conditions, `prefilter` passes
over runs of rules that cannot match at once, and `replies` turns the rule
that matched into a message, an error or a paced stream.
"""

from backends.scripted.backend import ScriptedBackend

__all__ = ["ScriptedBackend"]
