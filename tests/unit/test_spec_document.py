"""The spec as served at /openapi.json and /openapi.yaml (app/http/spec_document.py), which Swagger UI at /v1/ui reads.

It is the spec as the server loaded it, references intact; without the admin
routes it shows nothing of them — no path, tag, security scheme or schema —
and its one server is the root the server is reached at, relative, so that
Swagger UI's servers box names the server the page came from.
"""

from __future__ import annotations

from typing import Any

import pytest

from app import create_app
from app.spec.loading import load_spec
from app.spec.references import lookup, references
from backends.safe_yaml import safe_load

ADMIN_KEY = "spec-document-admin-key"
SERVERS = load_spec()["servers"]


@pytest.fixture(scope="module")
def with_admin() -> Any:
    return create_app({"admin_key": ADMIN_KEY})


def served(app: Any, path: str = "/openapi.json", **client: Any) -> Any:
    response = app.test_client(**client).get(path)
    assert response.status_code == 200, response.text
    return response.json() if path.endswith(".json") else safe_load(response.text)


def test_without_the_admin_routes_nothing_of_them_is_shown(app: Any) -> None:
    document = served(app)
    assert not [route for route in document["paths"] if route.startswith("/_understudy")]
    assert [tag["name"] for tag in document["tags"]] == [
        *("Messages", "Message Batches", "Models", "Files", "Operations"),
        *("Amazon Bedrock", "OpenAI compatibility", "Vertex AI"),
    ]
    assert set(document["components"]["securitySchemes"]) == {
        "ApiKeyAuth",
        "BearerAuth",
        "AwsSigV4Auth",
        "FoundryKeyAuth",
    }
    assert not {"JournalPage", "JournalEntry"} & set(document["components"]["schemas"])
    # what the admin routes share with the others stays
    assert {"ErrorResponse", "NullValue", "MessageStreamEvent"} <= set(document["components"]["schemas"])
    assert {"InvalidRequest", "Authentication"} <= set(document["components"]["responses"])


def test_with_the_admin_routes_they_are_shown(with_admin: Any) -> None:
    document = served(with_admin)
    assert {"/_understudy/requests", "/_understudy/reset"} <= set(document["paths"])
    assert "Admin" in [tag["name"] for tag in document["tags"]]
    assert "AdminKeyAuth" in document["components"]["securitySchemes"]
    assert {"JournalPage", "JournalEntry"} <= set(document["components"]["schemas"])


@pytest.mark.parametrize("admin", [False, True])
def test_the_document_is_the_spec_as_loaded_its_references_intact(app: Any, with_admin: Any, admin: bool) -> None:
    document = served(with_admin if admin else app)
    assert document == load_spec(admin=admin)
    dangling = [reference for reference in references(document) if lookup(document, reference) is None]
    assert len(list(references(document))) > 500 and not dangling


def test_the_yaml_document_is_the_same(app: Any) -> None:
    assert served(app, "/openapi.yaml") == served(app)


def test_its_server_is_the_one_serving_the_page(app: Any) -> None:
    assert served(app)["servers"] == SERVERS
    assert [server["url"] for server in SERVERS][:2] == ["/", "/anthropic"]
    below = served(app, "/proxy/openapi.json", root_path="/proxy")
    assert [server["url"] for server in below["servers"]] == ["/proxy/", *(f"/proxy{s['url']}" for s in SERVERS[1:])]


def test_swagger_ui_reads_it(app: Any) -> None:
    page = app.test_client().get("/v1/ui/")
    assert page.status_code == 200 and 'url: "/openapi.json"' in page.text
    assert 'url: "/proxy/openapi.json"' in app.test_client(root_path="/proxy").get("/proxy/v1/ui/").text


def test_other_methods_are_refused_in_the_api_s_words(app: Any) -> None:
    response = app.test_client().post("/openapi.json")
    assert response.status_code == 405 and response.headers["allow"] == "HEAD, GET"
    assert response.json()["error"] == {"type": "invalid_request_error", "message": "Method Not Allowed"}
