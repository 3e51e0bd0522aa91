"""The check of a Message Batch request's params, made when the request is processed, as the real API makes it.

The real API accepts a batch whose requests' params are malformed, and reports
each such request as an `errored` result once the batch has ended. So
openapi.yaml has the create route check only that params are objects, and
names, under `x-checked-when-processed`, the schema each is checked against
when it is answered: the create-message body, less streaming, of the API
version the batch was created with. The check is
the one POST /v1/messages makes — that schema with the same validator and
wording, then the rules beyond the schema (request_rules.py) — so an errored
result reads as the 400 the same body would get there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connexion.exceptions import BadRequestProblem
from connexion.json_schema import resolve_refs

from app.spec.request_rules import RequestRules
from app.spec.validators import VERSION_HEADER, check_body, for_version
from backends.wire import ApiError

#: The spec's schema of a batch request's params, and its key that names the schema they are checked against.
PARAMS_SCHEMA = "MessageBatchRequestParams"
CHECKED_AS = "x-checked-when-processed"


def params_check(
    spec: Mapping[str, Any], rules: RequestRules
) -> Callable[[Mapping[str, Any], Mapping[str, str]], None]:
    """The check of one request's params, from `spec` (openapi.yaml as loaded) and the request rules: raises the
    400 ApiError it earns.

    It is given the headers of the batch's create request too: the betas its anthropic-beta names are every
    request's, as they would be a POST /v1/messages's.
    """
    resolved = resolve_refs(spec)
    # With the components beside it, as Connexion hands a body schema to its validator: the discriminators'
    # mappings (a message's role, a block's type) point into them, so an error comes from the branch meant.
    checked = {**resolved["components"]["schemas"][PARAMS_SCHEMA][CHECKED_AS], "components": resolved["components"]}

    def check(params: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        # The batch's anthropic-version is every request's: its params are checked by that version's schema.
        try:
            check_body(for_version(checked, headers.get(VERSION_HEADER)), params)
        except BadRequestProblem as problem:
            raise ApiError(400, str(problem.detail)) from None
        rules.check(params, headers)

    return check
