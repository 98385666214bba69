#!/bin/sh
# Lint: ruff's rules and formatting over the tree, then mypy over the package.
# The package's folders sit at the top of the repository (kernels/, engine/, daemon/, ...)
# and install as edgebnn.kernels, edgebnn.engine, ...: mypy reads a tree of links laid out
# like the installed package, so module names (and the import checks) are the real ones.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# dev: ruff, mypy, PyYAML's stubs; metrics: prometheus-client, whose types mypy reads.
python3 -m pip install -q -e '.[dev,metrics]'
python3 -m ruff check .
python3 -m ruff format --check .

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/edgebnn"
for f in src/edgebnn/*.py; do ln -s "$repo/$f" "$tree/edgebnn/"; done
for d in kernels engine daemon bench systemd config; do ln -s "$repo/$d" "$tree/edgebnn/$d"; done
cd "$tree"
python3 -m mypy -p edgebnn --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache"
