"""Example values for tool input schemas always validate against the schema."""

import pytest

from backends.schema_example import example, is_valid

SCHEMAS = [
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9, "multipleOf": 2}},
        "required": ["n"],
    },
    {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}}, "required": ["x"]},
    {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
        "required": ["tags"],
    },
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}, "required": ["when"]},
    {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["ABC"]}},
        "required": ["code"],
    },
    {"type": "object", "properties": {"short": {"type": "string", "maxLength": 3}}, "required": ["short"]},
    {
        "type": "object",
        "properties": {"mode": {"enum": ["fast", "slow"]}, "k": {"const": 7}},
        "required": ["mode", "k"],
    },
    {
        "type": "object",
        "properties": {"v": {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "null"}]}},
        "required": ["v"],
    },
    {"type": "object", "properties": {"flag": {"type": ["boolean", "null"]}}, "required": ["flag"]},
    {
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
        "properties": {"at": {"$ref": "#/$defs/point"}},
        "required": ["at"],
    },
    {
        "type": "object",
        "properties": {"shape": {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]}},
        "required": ["shape"],
    },
    {"type": "object", "properties": {"optional": {"type": "string"}}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_example_validates(schema):
    value = example(schema, hint="What is the weather in Paris?")
    assert is_valid(schema, value), value


def test_strings_take_the_hint_when_it_fits():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    assert example(schema, hint="Paris") == {"q": "Paris"}
