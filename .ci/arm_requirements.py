#!/usr/bin/env python3
"""Print a pyproject.toml's dependencies and the named extras, one requirement a line
(.ci/arm.sh downloads them as aarch64 wheels)."""

import sys

import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for requirement in project["dependencies"]:
    print(requirement)
for extra in sys.argv[2:]:
    for requirement in project["optional-dependencies"][extra]:
        print(requirement)
