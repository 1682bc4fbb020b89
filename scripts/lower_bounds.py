"""Print every direct dependency of pyproject.toml pinned to its lower bound (`>=` -> `==`).

Used by `make test-lowest`, which runs the suite on exactly those versions, so that the
bounds we publish are versions siwa-web was seen to work with.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9_.-]+(?:\[[A-Za-z0-9_,.-]+\])?)\s*>=\s*([0-9][^,;\s]*)\s*$")


def pinned(requirement: str) -> str:
    """`name[extra]>=1.2` -> `name[extra]==1.2`; anything without a plain lower bound is refused."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"not of the form name>=version: {requirement!r}")
    return f"{match.group(1)}=={match.group(2)}"


def lower_bounds(pyproject: Path, extras: tuple[str, ...] = ("test",)) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    return [pinned(r) for r in requirements]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(lower_bounds(root / "pyproject.toml")))
    sys.exit(0)
