"""setup.cfg lists every package of the server tree, so the wheel carries the whole server."""

from __future__ import annotations

import configparser

from builders import REPO_ROOT


def test_every_server_package_is_in_the_wheel():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = {
        "understudy.server." + ".".join(folder.relative_to(REPO_ROOT).parts)
        for top in ("app", "backends")
        for folder in [REPO_ROOT / top, *(REPO_ROOT / top).rglob("*")]
        if folder.is_dir() and any(folder.glob("*.py")) and folder != REPO_ROOT / "app" / "launcher"
    }
    assert on_disk <= listed, f"add to setup.cfg's packages: {sorted(on_disk - listed)}"
