"""openapi.yaml names nothing twice: YAML keeps the last of two equal keys without a word.

Two changes that each add the same component (a parameter two sets of routes
share, say) merge without a conflict and would leave two copies, one silently
shadowing the other; this test makes such a merge fail instead.
"""

from __future__ import annotations

from typing import Any

import yaml

from app.spec.loading import SPEC_FILE
from backends.safe_yaml import SafeLoader

MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(SafeLoader):  # type: ignore[misc,valid-type]  # libyaml's, where PyYAML has it
    """YAML's safe loader (libyaml's parser, where PyYAML has it), refusing a mapping that holds a key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # A merge key (`<<: *properties`) brings keys in on purpose, and the mapping's own keys override them.
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value if key.tag != MERGE_TAG]
        repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def test_no_key_is_repeated():
    yaml.load(SPEC_FILE.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a safe loader, refusing repeats
