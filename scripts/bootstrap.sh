#!/usr/bin/env bash
# Foresight's one set-up step: installs what the build and the runtime need on a fresh Debian
# machine, into the repository (nothing to export by hand). Idempotent: every step checks first,
# so rerunning it is cheap. Called by `make demo` and `make test` (the README's two commands).
#
#   .venv/                     project-local Python venv
#   .venv/onnxruntime/         -> libonnxruntime.so.1.31.1 from the PyPI `onnxruntime` wheel
#                                 (what `ort` opens with `load-dynamic`)
#   .venv/libtorch/            -> CPU libtorch 2.13.0 from the PyPI `torch` wheel (for `tch` 0.26),
#                                 plus the two small CUDA runtime wheels libtorch_cpu.so links
#   .venv/ tritonclient[grpc], grpcio-reflection
#                              outside clients for the service's interoperability tests
#   .venv/ foresight-client    the project's Python client (clients/python), pytest, pandas,
#                              matplotlib, nbclient + ipykernel (the notebooks)
#   fonts-dejavu-core          the font the PNG charts are labelled with (Debian package)
#   protobuf-compiler          protoc, for the gRPC API (Debian package)
#   prometheus                 scrapes a live service in the dashboard test (Debian package)
#   nats-server                JetStream for the replicated service's tests (Debian package)
#   chromium, chromium-driver  headless browser for the HTML report's test (Debian packages)
#
# `.cargo/config.toml` points LIBTORCH and ORT_DYLIB_PATH at these paths for every cargo command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ORT_VERSION=1.31.1
TORCH_VERSION=2.13.0
CUDA_RUNTIME_VERSION=13.0.96
CUDA_CUPTI_VERSION=13.0.85
VENV=.venv

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) and rerun"
command -v python3 >/dev/null || die "python3 not found: apt-get install python3 python3-venv"

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || die "need Debian packages $*; install them by hand"
  say "apt-get install $*"
  $sudo apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Font for chart labels.
if [ -z "${FORESIGHT_FONT:-}" ] && [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  apt_install fonts-dejavu-core
fi

# Headless Chromium and its WebDriver, for the test that opens `foresight report`'s page in a
# real browser (tests/clients/report_browser.py, driven by Selenium from the venv).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install --no-install-recommends chromium chromium-driver
fi

# Servers the tests start themselves, on free loopback ports (their packages' own daemons are
# kept from starting and left disabled: invoke-rc.d asks policy-rc.d before it starts a
# package's service, and 101 means "not now"):
#   prometheus    for the test that every panel of deploy/grafana/foresight.json has data;
#   nats-server   JetStream, for the replicated service's tests (state = "nats://...").
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
install_without_daemon() { # package binary
  [ -x "$2" ] && return
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    own_policy=1
    trap 'as_root rm -f "$policy"' EXIT # also when the install fails
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
  fi
  apt_install --no-install-recommends "$1"
  if [ -n "$own_policy" ]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now "$1" >/dev/null 2>&1 || true
  fi
}
install_without_daemon prometheus /usr/bin/prometheus
install_without_daemon nats-server /usr/sbin/nats-server

# protoc for the gRPC API's code generation (tonic-prost-build).
if ! command -v protoc >/dev/null && [ -z "${PROTOC:-}" ]; then
  apt_install protobuf-compiler
fi

# Project-local venv.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# ONNX Runtime: the wheel ships only the versioned shared library.
ORT_LIB="$SITE/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ORT_LIB" ]; then
  say "installing onnxruntime==$ORT_VERSION"
  "${PIP[@]}" install "onnxruntime==$ORT_VERSION"
fi
[ -f "$ORT_LIB" ] || die "onnxruntime $ORT_VERSION installed but $ORT_LIB is missing"
mkdir -p "$VENV/onnxruntime"
ln -sfn "$ORT_LIB" "$VENV/onnxruntime/libonnxruntime.so"

# libtorch (CPU part of the torch wheel; the wheel is ~1 GB, so it is deleted after install).
TORCH_DIR="$SITE/torch"
if [ ! -f "$TORCH_DIR/lib/libtorch_cpu.so" ] || ! grep -q "__version__ = '$TORCH_VERSION" "$TORCH_DIR/version.py" 2>/dev/null; then
  say "installing libtorch $TORCH_VERSION from the PyPI torch wheel (about 1 GB, a few minutes)"
  wheels=$(mktemp -d)
  "${PIP[@]}" download "torch==$TORCH_VERSION" --no-deps -d "$wheels"
  "${PIP[@]}" install --no-deps "$wheels"/torch-"$TORCH_VERSION"-*.whl
  rm -rf "$wheels"
fi
if ! "$PY" -c "import importlib.metadata as m; assert m.version('nvidia-cuda-runtime') == '$CUDA_RUNTIME_VERSION' and m.version('nvidia-cuda-cupti') == '$CUDA_CUPTI_VERSION'" 2>/dev/null; then
  say "installing the CUDA runtime libraries libtorch_cpu.so links against"
  "${PIP[@]}" install --no-deps "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" "nvidia-cuda-cupti==$CUDA_CUPTI_VERSION"
fi
ln -sfn "$TORCH_DIR" "$VENV/libtorch"

# Clients nobody here wrote, for the service's interoperability tests (tests/clients/*.py, run by
# the test suite): Triton's Python client for the Open Inference Protocol, and Python's gRPC
# reflection client (v1alpha).
TRITONCLIENT_VERSION=2.73.0
GRPCIO_VERSION=1.81.1   # grpcio-reflection 1.82+ needs protobuf 7, tritonclient 2.73 protobuf < 7
if ! "$PY" -c "import importlib.metadata as m; assert m.version('tritonclient') == '$TRITONCLIENT_VERSION' and m.version('grpcio-reflection') == '$GRPCIO_VERSION'; import tritonclient.grpc, grpc_reflection" 2>/dev/null; then
  say "installing tritonclient[grpc]==$TRITONCLIENT_VERSION, grpcio-reflection==$GRPCIO_VERSION"
  "${PIP[@]}" install "tritonclient[grpc]==$TRITONCLIENT_VERSION" "grpcio==$GRPCIO_VERSION" "grpcio-reflection==$GRPCIO_VERSION"
fi

# The project's own Python client (clients/python: its gRPC stubs are generated from proto/ when
# it is installed) with what its tests and the notebooks use (pytest, pandas, matplotlib, and
# nbclient with ipykernel to execute the notebooks). Reinstalled whenever the protos or
# the client change, so it never lags behind the service.
client_hash=$(cat proto/foresight/v1/*.proto clients/python/setup.py clients/python/pyproject.toml clients/python/foresight_client/*.py | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.foresight-client" 2>/dev/null)" != "$client_hash" ]; then
  say "installing the Python client (clients/python) with pytest, pandas and the notebooks' kit"
  "${PIP[@]}" install "./clients/python[test,notebooks]"
  echo "$client_hash" > "$VENV/.foresight-client"
fi

SELENIUM_VERSION=4.51.0
if ! "$PY" -c "import importlib.metadata as m; assert m.version('selenium') == '$SELENIUM_VERSION'" 2>/dev/null; then
  say "installing selenium==$SELENIUM_VERSION (drives Chromium in the report's browser test)"
  "${PIP[@]}" install "selenium==$SELENIUM_VERSION"
fi

# An S3-compatible server for the registry's object-store tests (tests/registry_store.rs starts
# its own on a free loopback port): moto's, which honours conditional writes (If-None-Match,
# If-Match) as S3 does.
MOTO_VERSION=5.2.5
if ! "$PY" -c "import importlib.metadata as m; assert m.version('moto') == '$MOTO_VERSION'; import flask, flask_cors" 2>/dev/null; then
  say "installing moto[s3]==$MOTO_VERSION with its server (flask)"
  "${PIP[@]}" install "moto[s3]==$MOTO_VERSION" flask flask-cors
fi

say "ready: ONNX Runtime $ORT_VERSION at $VENV/onnxruntime, libtorch $TORCH_VERSION at $VENV/libtorch"
