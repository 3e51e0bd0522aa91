"""The model catalogue: loading, ordering, lookup and cursor pagination."""

from typing import get_args

import pytest

from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.wire import ApiError

MODELS = [
    {"id": f"model-{day:02d}", "display_name": f"Model {day}", "created_at": f"2026-01-{day:02d}T00:00:00Z"}
    for day in range(1, 8)
]


@pytest.fixture
def catalogue():
    return ModelCatalogue(MODELS)


def test_newest_first_with_defaults(catalogue):
    first = catalogue.models[0]
    assert first["id"] == "model-07"
    assert first["type"] == "model" and first["lifecycle"] == "active"


def test_pages_forward_and_back(catalogue):
    page = catalogue.page(after_id=None, before_id=None, limit=3)
    assert [m["id"] for m in page["data"]] == ["model-07", "model-06", "model-05"]
    assert page["has_more"] and page["first_id"] == "model-07" and page["last_id"] == "model-05"
    last = catalogue.page(after_id="model-03", before_id=None, limit=3)
    assert [m["id"] for m in last["data"]] == ["model-02", "model-01"] and not last["has_more"]
    back = catalogue.page(after_id=None, before_id="model-02", limit=2)
    assert [m["id"] for m in back["data"]] == ["model-04", "model-03"] and back["has_more"]


def test_unknown_ids(catalogue):
    with pytest.raises(ApiError) as missing:
        catalogue.get("claude-nope")
    assert missing.value.status == 404 and missing.value.error_type == "not_found_error"
    with pytest.raises(ApiError) as cursor:
        catalogue.page(after_id="claude-nope", before_id=None, limit=2)
    assert cursor.value.status == 400


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{}", "must hold a list"),
        ("- {id: a, display_name: A}", "lacks created_at"),
        ("- {id: a, display_name: A, created_at: yesterday}", "RFC 3339"),
        ("- {id: a, display_name: A, created_at: '2026-01-01T00:00:00Z', lifecycle: gone}", "lifecycle"),
        ("- [not, a, mapping]", "not a mapping"),
        ("[unclosed", "while parsing"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "models.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as error:
        ModelCatalogue.from_file(path)
    assert str(path) in str(error.value)


def test_shipped_catalogue_loads():
    assert len(ModelCatalogue.from_file(DEFAULT_FILE).models) >= 10


def test_an_alias_resolves_to_its_model():
    catalogue = ModelCatalogue.from_file(DEFAULT_FILE)
    assert catalogue.get("claude-sonnet-4-5")["id"] == "claude-sonnet-4-5-20250929"
    assert catalogue.get("claude-sonnet-4-5") == catalogue.get("claude-sonnet-4-5-20250929")
    assert "aliases" not in catalogue.get("claude-sonnet-4-5") and "min_cache_tokens" not in catalogue.models[0]


def test_the_list_shows_active_and_deprecated_models_unless_asked_for_others():
    catalogue = ModelCatalogue.from_file(DEFAULT_FILE)
    listed = catalogue.page(after_id=None, before_id=None, limit=1000)["data"]
    assert {model["lifecycle"] for model in listed} == {"active", "deprecated"}
    retired = catalogue.page(after_id=None, before_id=None, limit=1000, lifecycle=["retired"])["data"]
    assert retired and {model["lifecycle"] for model in retired} == {"retired"}
    every = catalogue.page(after_id=None, before_id=None, limit=1000, lifecycle=["active", "deprecated", "retired"])
    assert len(every["data"]) == len(catalogue.models)


def test_every_model_the_newest_sdk_names_is_in_the_catalogue():
    # Imported here, not at the top: importing the SDK takes 2 s, and this is the only unit test that needs it.
    from anthropic.types.model_param import ModelParam

    catalogue = ModelCatalogue.from_file(DEFAULT_FILE)
    (named, _) = get_args(ModelParam)
    missing = [name for name in get_args(named) if catalogue.find(name) is None]
    assert not missing


def test_an_alias_given_twice_is_refused(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(
        "- {id: a, aliases: [b], display_name: A, created_at: '2026-01-01T00:00:00Z'}\n"
        "- {id: b, display_name: B, created_at: '2026-01-02T00:00:00Z'}\n"
    )
    with pytest.raises(ValueError, match="'b' is given twice"):
        ModelCatalogue.from_file(path)
