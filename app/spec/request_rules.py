"""RequestRules: every rule a Messages request keeps beyond its schema, in the order the API checks them.

First the rules between fields and betas (cross_field.py), then the rules of
the model the request names (model_rules.py), read from the catalogue. One
object, built once by the composition root, checks POST /v1/messages,
count_tokens and each request of a Message Batch alike, whichever backend
answers: a scripted reply cannot make a refused request succeed.

A model the catalogue lacks (a name UNDERSTUDY_ANY_MODEL serves, or one the
backend answers with a 404) keeps the rules every model shares, and none of
its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.spec import cross_field, model_rules
from backends.catalogue import UNLISTED_MODEL, ModelCatalogue


class RequestRules:
    """The rules of one catalogue, for every Messages request."""

    def __init__(self, catalogue: ModelCatalogue) -> None:
        self.catalogue = catalogue

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], *, counting: bool = False) -> None:
        """Raise the 400 ApiError of the first rule `body` breaks; `headers` name its betas; `counting` for
        count_tokens, which has no reply to prefill."""
        cross_field.check(body, cross_field.betas_of(headers.get("anthropic-beta")))
        model_rules.check(body, self.catalogue.find(body["model"]) or UNLISTED_MODEL, counting=counting)
