#!/usr/bin/env bash
# Install sdxlpool into a virtual environment (.venv), with the torch build that suits this machine.
#
#   bash scripts/install.sh                 # .venv with torch and sdxlpool (editable)
#   bash scripts/install.sh --test          # ... with the test and lint tools too (pip install -e ".[test]")
#   bash scripts/install.sh --step torch    # one step only: venv, torch or package (CI times each one)
#   bash scripts/install.sh --dry-run       # say what would be installed, install nothing
#
# Which torch (first that applies):
#   1. $SDXLPOOL_TORCH_WHEEL, a wheel file on this machine;
#   2. a CPU wheel in /opt/wheels for this Python and architecture (torch-*+cpu-cpXY-*.whl), newest first;
#   3. an NVIDIA GPU (nvidia-smi lists one): torch from PyPI, whose Linux build is the CUDA one;
#   4. otherwise the CPU build from PyTorch's CPU index, or PyPI's torch when that index cannot be reached.
# $SDXLPOOL_TORCH_SPEC pins what 3 and 4 ask for (default "torch", the package asks only torch>=2.6),
# e.g. SDXLPOOL_TORCH_SPEC="torch==2.13.0". Run it again at any time: what is installed already stays.
# (Tests move the wheel folder, the CPU index and nvidia-smi: SDXLPOOL_WHEELS_DIR, SDXLPOOL_TORCH_CPU_INDEX,
# SDXLPOOL_NVIDIA_SMI.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STEP=all
EXTRAS=""
DRY_RUN=""
TORCH_SPEC=${SDXLPOOL_TORCH_SPEC:-torch}
WHEELS_DIR=${SDXLPOOL_WHEELS_DIR:-/opt/wheels}
CPU_INDEX=${SDXLPOOL_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
NVIDIA_SMI=${SDXLPOOL_NVIDIA_SMI:-nvidia-smi}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
fail() { echo "install.sh: error: $*" >&2; exit 2; }

while (($#)); do
    case $1 in
        --test) EXTRAS="[test]" ;;
        --step) STEP=${2:-}; shift ;;
        --venv) VENV=${2:-}; shift ;;
        --python) PYTHON=${2:-}; shift ;;
        --dry-run) DRY_RUN=1 ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
    shift
done
case $STEP in all|venv|torch|package) ;; *) fail "--step: one of venv, torch, package, got '$STEP'" ;; esac
[[ -n $VENV ]] || fail "--venv: give a directory"

VENV_PY=$VENV/bin/python
pip_install() {
    if [[ -n $DRY_RUN ]]; then echo "would run: pip install $*"; return; fi
    "$VENV_PY" -m pip install --disable-pip-version-check "$@"
}

step_venv() {
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (set PYTHON=..., Python 3.10 or newer)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || fail "$PYTHON is $("$PYTHON" -V 2>&1); sdxlpool needs Python 3.10 or newer"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || fail "$PYTHON cannot create virtual environments (on Debian/Ubuntu: apt-get install python3-venv)"
    [[ -x $VENV_PY || -n $DRY_RUN ]] || "$PYTHON" -m venv "$VENV"
    echo "virtual environment: $VENV ($("$VENV_PY" -V 2>/dev/null || "$PYTHON" -V))"
}

local_cpu_wheel() {  # the newest torch CPU wheel in $WHEELS_DIR for this Python and machine, if any
    local tag arch py=$VENV_PY
    [[ -x $py ]] || py=$PYTHON  # a dry run before the venv exists
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    arch=$(uname -m)
    compgen -G "${WHEELS_DIR}/torch-*+cpu-${tag}-${tag}-*_${arch}.whl" | sort -V | tail -n 1 || true
}

has_nvidia_gpu() { command -v "$NVIDIA_SMI" >/dev/null && "$NVIDIA_SMI" -L 2>/dev/null | grep -q '^GPU'; }

cpu_index_reachable() {
    "$PYTHON" - "$CPU_INDEX/torch/" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10).close()
PY
}

step_torch() {
    [[ -x $VENV_PY || -n $DRY_RUN ]] || fail "no $VENV yet: run without --step, or --step venv first"
    local wheel=${SDXLPOOL_TORCH_WHEEL:-}
    if [[ -n $wheel ]]; then
        [[ -f $wheel ]] || fail "SDXLPOOL_TORCH_WHEEL=$wheel: no such file"
        echo "torch: the wheel named by SDXLPOOL_TORCH_WHEEL, $wheel"
        pip_install "$wheel"
    elif wheel=$(local_cpu_wheel) && [[ -n $wheel ]]; then
        echo "torch: the local CPU wheel $wheel"
        pip_install "$wheel"
    elif has_nvidia_gpu; then
        echo "torch: an NVIDIA GPU is present, so $TORCH_SPEC from PyPI (the CUDA build)"
        pip_install "$TORCH_SPEC"
    elif cpu_index_reachable; then
        echo "torch: no NVIDIA GPU, so the CPU build of $TORCH_SPEC from $CPU_INDEX"
        pip_install --index-url "$CPU_INDEX" "$TORCH_SPEC"
    else
        echo "torch: no NVIDIA GPU, and $CPU_INDEX cannot be reached: $TORCH_SPEC from PyPI"
        pip_install "$TORCH_SPEC"
    fi
}

step_package() {
    [[ -x $VENV_PY || -n $DRY_RUN ]] || fail "no $VENV yet: run without --step, or --step venv first"
    [[ -n $DRY_RUN ]] || "$VENV_PY" -c 'import torch' 2>/dev/null || echo "note: no torch in $VENV yet; pip will pick one (--step torch chooses the build)"
    pip_install -e ".${EXTRAS}"
    [[ -z $DRY_RUN ]] || return 0
    "$VENV_PY" -c 'import torch, sdxlpool; print("installed: torch", torch.__version__, "| sdxlpool", sdxlpool.__version__)'
}

case $STEP in
    all) step_venv; step_torch; step_package
         echo "done: $VENV/bin/sdxlpool --help lists the commands" ;;
    *) "step_$STEP" ;;
esac
