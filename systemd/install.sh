#!/bin/sh
# Install edgebnn as a systemd service from this source checkout, or remove it:
#   sudo systemd/install.sh [--dry-run] [--mode wheels|distro] [--no-start] [--model NAME] ...
#   sudo systemd/install.sh uninstall [--dry-run] [--purge]
# --model NAME fetches an ELL gallery model (sha256-checked) and configures it; before the
# first start the model's kernels are compiled into the service's cache (a warm start).
# It only finds a Python >= 3.10 (openSUSE Leap 15's python3 is 3.6) and hands over to
# the stdlib-only installer in systemd/ (loaded as a package from this checkout, without
# importing edgebnn), which `edgebnn service install` also runs.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
action=install
if [ "${1:-}" = uninstall ]; then
    action=uninstall
    shift
fi

find_python() {
    for py in python3.13 python3.12 python3.11 python3.10 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

if ! py=$(find_python); then
    if command -v zypper >/dev/null 2>&1; then
        echo "install.sh: installing python311 (this openSUSE's python3 is too old)" >&2
        zypper --non-interactive install python311
        py=$(find_python)
    else
        echo "install.sh: edgebnn needs Python >= 3.10" >&2
        exit 1
    fi
fi
exec "$py" -c '
import importlib.util, sys
here = sys.argv[1]
spec = importlib.util.spec_from_file_location(
    "edgebnn_systemd", here + "/systemd/__init__.py", submodule_search_locations=[here + "/systemd"]
)
package = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = package
spec.loader.exec_module(package)
from edgebnn_systemd.commands import main
action = sys.argv[2]
source = ["--source", here] if action == "install" else []
sys.exit(main(["service", action, *source, *sys.argv[3:]]))
' "$here" "$action" "$@"
