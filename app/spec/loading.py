"""Loading openapi.yaml, the single source of routing and validation.

The file is used as written, with two switches: UNDERSTUDY_ALLOW_UNKNOWN_FIELDS
opens the top-level request schemas to fields the spec does not know, for
SDKs newer than the spec; and the admin routes (tagged Admin) are served only
when an admin key is set. Everything else the spec says still holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path(__file__).resolve().parents[2] / "openapi.yaml"
#: The request bodies whose unknown top-level fields the switch lets through.
TOP_LEVEL_REQUESTS = ("MessageCreateParams", "MessageCountTokensParams")
ADMIN_TAG = "Admin"


def load_spec(*, allow_unknown_fields: bool = False, admin: bool = False, path: Path = SPEC_FILE) -> dict[str, Any]:
    """The spec as a dict, ready for Connexion's add_api."""
    spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not admin:
        spec["paths"] = {
            route: operations
            for route, operations in spec["paths"].items()
            if not any(ADMIN_TAG in operation.get("tags", ()) for operation in operations.values())
        }
    if allow_unknown_fields:
        for name in TOP_LEVEL_REQUESTS:
            spec["components"]["schemas"][name]["additionalProperties"] = True
    return spec
