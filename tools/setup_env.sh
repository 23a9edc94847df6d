#!/usr/bin/env bash
# Build the DropKey Bench environment into the active Python (a venv, conda env or the system one).
#
# Idempotent: a second run on the same machine finds everything installed, or takes the mmcv wheel
# from the cache, and finishes in well under 3 minutes. A working torch + torchvision that is already
# installed (for example a user's own CUDA build) is kept and pinned for every later install.
#
# Environment:
#   PYTHON               interpreter to install into (default: python)
#   DROPKEY_CACHE_DIR    where the built mmcv wheel is cached (default: ~/.cache/dropkey-bench)
set -euo pipefail

PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${DROPKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dropkey-bench}
TORCH_PIN="torch==2.14.1 torchvision==0.29.1"   # the CPU-capable pair measured on these machines
MMCV_VERSION=2.1.0                               # mmdet 3.3.0 refuses mmcv >= 2.2.0
PIP=("$PYTHON" -m pip install --disable-pip-version-check)

log() { printf '[setup] %s\n' "$*" >&2; }

torch_works() {
  "$PYTHON" - <<'PY' >/dev/null 2>&1
import torch, torchvision
torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
PY
}

if torch_works; then
  log "keeping installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
else
  log "installing $TORCH_PIN"
  # shellcheck disable=SC2086
  "${PIP[@]}" $TORCH_PIN
  torch_works || { log "torch/torchvision still fail to import"; exit 1; }
fi

# Pin whatever torch/torchvision we now have so no later install swaps them out.
mkdir -p "$CACHE_DIR"
CONSTRAINTS="$CACHE_DIR/constraints.txt"
"$PYTHON" - "$CONSTRAINTS" <<'PY'
import sys
from importlib.metadata import version
with open(sys.argv[1], "w") as f:  # distribution versions, as pip sees them
    f.write(f"torch=={version('torch')}\ntorchvision=={version('torchvision')}\n")
PY

mmcv_works() {
  "$PYTHON" - "$MMCV_VERSION" <<'PY' >/dev/null 2>&1
import sys, mmcv, mmcv.ops
assert mmcv.__version__ == sys.argv[1]
PY
}

if mmcv_works; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  # setup.py of mmcv 2.1.0 imports pkg_resources, gone from setuptools >= 81.
  "${PIP[@]}" -c "$CONSTRAINTS" "setuptools<81" wheel ninja
  TAG=$("$PYTHON" -c 'import sys, torch; print("torch%s-py%d%d" % (torch.__version__.replace("+", "_"), *sys.version_info[:2]))')
  WHEEL_DIR="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-$TAG"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with ops (about 10-13 min on 2 cores); cached in $WHEEL_DIR"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    "$PYTHON" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    # torch >= 2.14 headers require C++20; gcc builds the mmcv sources fine with it.
    sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$PYTHON" -m pip wheel --disable-pip-version-check \
      --no-build-isolation --no-deps -w "$BUILD/dist" "$BUILD/mmcv-$MMCV_VERSION"
    mkdir -p "$WHEEL_DIR.tmp" && mv "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR.tmp"/ && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"
  fi
  "${PIP[@]}" -c "$CONSTRAINTS" "$WHEEL_DIR"/mmcv-*.whl
  mmcv_works || { log "mmcv.ops fails to import after install"; exit 1; }
fi

log "installing dropkey-bench and its dependencies"
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[test]"

"$PYTHON" -c "import mmcv.ops, mmdet.models, timm, torchvision.ops, smplx, pycocotools, sklearn, tensorboard, dropkey_core, tasks"
log "environment ready"
