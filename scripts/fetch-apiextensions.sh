#!/usr/bin/env bash
# Build a real Kubernetes API server component (k8s.io/apiextensions-apiserver, the code that serves
# CRDs and custom resources inside kube-apiserver) and fetch etcd, for tests/apiserver, into
# .tools/bin/apiextensions-apiserver and .tools/bin/etcd (git-ignored).
#
#   bash scripts/fetch-apiextensions.sh      (from anywhere; needs apt-get, dpkg, sha256sum; no root)
#
# Everything comes from Debian unstable through an apt configuration of this script's own (sources
# list, lists, archives and an empty dpkg status under the cache dir, APT_CONFIG=...): the system's
# sources and packages are not touched, nothing is installed system-wide. Debian packages the server's
# Go sources (golang-k8s-apiextensions-apiserver-dev and its golang-*-dev closure, computed here with
# `apt-cache depends --recurse`) and Go itself (golang-1.27-go, golang-1.27-src); they are unpacked
# with `dpkg -x` and the server is built in GOPATH mode (GO111MODULE=off GOPROXY=off CGO_ENABLED=0,
# about 4 minutes on 2 cores). etcd is Debian's etcd-server (unstable, else bookworm).
#
# Cache: ${SDXLPOOL_CACHE_DIR:-$HOME/.cache/sdxlpool}/apiextensions/. The built binaries are kept in
# builds/KEY/, KEY being the sha256 of the sorted package=version list, so a re-run with the same
# versions copies them (seconds, no download, no build). When Debian cannot be reached: a cached build
# is used if there is one, else the script exits 3 with a one-line reason on stderr, also written to
# .tools/fetch-apiextensions.error (tests/apiserver/conftest.py skips with it). Any other failure exits 1.
# Unpacked, the packages take about 2.3 GB (320 MB of .debs), in CACHE/work while it builds only.
# apt checks every .deb against the signed Release of the suite (the system's Debian keyring).
#
# SDXLPOOL_TOOLS_DIR=DIR installs into DIR/bin instead of .tools/bin; SDXLPOOL_DEBIAN_MIRROR=URL uses
# another Debian mirror (tests/apiserver/test_fetch_script.py: one that does not answer).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SUITE=unstable
MIRROR=${SDXLPOOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOT_PACKAGE=golang-k8s-apiextensions-apiserver-dev
GO_PACKAGES=(golang-1.27-go golang-1.27-src)
GO_VERSION=1.27
RECIPE=1  # part of the cache key: raise it when the build below changes, so cached builds are not reused
cache=${SDXLPOOL_CACHE_DIR:-$HOME/.cache/sdxlpool}/apiextensions
bin=${SDXLPOOL_TOOLS_DIR:-$PWD/.tools}/bin
error_file=$bin/../fetch-apiextensions.error
started=$(date +%s)

say() { echo "fetch-apiextensions: $* ($(( $(date +%s) - started ))s)"; }
unreachable() {  # unreachable REASON: no Debian; a cached build if any, else exit 3 with the reason
    local latest
    latest=$(ls -1t "$cache/builds" 2>/dev/null | head -n1 || true)
    if [[ -n $latest && -x $cache/builds/$latest/apiextensions-apiserver && -x $cache/builds/$latest/etcd ]]; then
        echo "fetch-apiextensions: $1; using the cached build $latest" >&2
        install_from "$cache/builds/$latest"
        exit 0
    fi
    mkdir -p "$bin" && echo "$1" >"$error_file"
    echo "fetch-apiextensions: $1" >&2
    exit 3
}
install_from() {  # install_from DIR: copy DIR's two binaries into .tools/bin atomically
    mkdir -p "$bin"
    for name in apiextensions-apiserver etcd; do
        install -m 0755 "$1/$name" "$bin/$name.tmp"
        mv "$bin/$name.tmp" "$bin/$name"
    done
    say "installed $bin/apiextensions-apiserver and $bin/etcd from $1"
}

mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/apt/etc/sources.list.d" \
    "$cache/apt/etc/preferences.d" "$cache/builds"
exec 9>"$cache/lock"
flock 9  # one run at a time per cache (CI and a developer's shell, two worktrees)
rm -f "$error_file"

# 1. Our own apt: unstable (binary packages for amd64/this machine's arch), empty dpkg status so the
# closure is computed as for an empty system, the system's trusted keys.
: >"$cache/apt/status"
cat >"$cache/apt/etc/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
EOF
cat >"$cache/apt/apt.conf" <<EOF
Dir::Etc::SourceList "$cache/apt/etc/sources.list";
Dir::Etc::SourceParts "$cache/apt/etc/sources.list.d";
Dir::Etc::Preferences "$cache/apt/etc/preferences";
Dir::Etc::PreferencesParts "$cache/apt/etc/preferences.d";
Dir::State "$cache/apt";
Dir::State::Lists "$cache/apt/lists";
Dir::State::status "$cache/apt/status";
Dir::Cache "$cache/apt";
Dir::Cache::Archives "$cache/apt/archives";
APT::Default-Release "$SUITE";
APT::Get::List-Cleanup "true";
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Acquire::Retries "2";
Acquire::http::Timeout "20";
Debug::NoLocking "true";
EOF
# As root apt downloads as _apt, who cannot write under root's home: download as root, without the warning.
[[ $(id -u) != 0 ]] || echo 'APT::Sandbox::User "root";' >>"$cache/apt/apt.conf"
: >"$cache/apt/etc/preferences"
export APT_CONFIG=$cache/apt/apt.conf

if ! apt-get -q update >"$cache/update.log" 2>&1 || grep -qE '^(W|E): Failed to fetch' "$cache/update.log"; then
    unreachable "cannot reach Debian $SUITE at $MIRROR ($(grep -E '^(E:|W: Failed)' "$cache/update.log" | head -n1 | tr -s '\t ' ' ' | cut -c1-200))"
fi
say "apt-get update against $MIRROR $SUITE done"

# 2. The packages: the golang-*-dev closure of the server's sources (depends only; the tools and the
# default-Go metapackages some of them pull in are left out), Go itself, etcd.
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "$ROOT_PACKAGE" | grep -E '^golang-.*-dev$' | sort -u)
((${#closure[@]} > 10)) || { echo "fetch-apiextensions: no closure for $ROOT_PACKAGE in $SUITE" >&2; exit 1; }
etcd_pkg=etcd-server
# One apt-cache call for all candidates (a call per package costs a second each); a name with no
# candidate is a virtual golang-*-dev (its provider is in the closure too) and is dropped.
mapfile -t packages < <(apt-cache policy "${closure[@]}" "${GO_PACKAGES[@]}" "$etcd_pkg" \
    | awk '/^[^ ]/ {sub(":$", "", $1); p = $1} /^  Candidate:/ && $2 != "(none)" {print p "=" $2}' | sort -u)
version_of() { printf '%s\n' "${packages[@]}" | awk -F= -v p="$1" '$1 == p {print $2}'; }
for pkg in "$ROOT_PACKAGE" "${GO_PACKAGES[@]}" "$etcd_pkg"; do
    [[ -n $(version_of "$pkg") ]] || { echo "fetch-apiextensions: $pkg has no candidate in $SUITE or bookworm" >&2; exit 1; }
done
key=$( (echo "recipe=$RECIPE"; printf '%s\n' "${packages[@]}" | sort) | sha256sum | cut -c1-16)
build=$cache/builds/$key
say "${#packages[@]} packages ($ROOT_PACKAGE $(version_of "$ROOT_PACKAGE"), golang-$GO_VERSION-go $(version_of "golang-$GO_VERSION-go"), $etcd_pkg $(version_of "$etcd_pkg")), key $key"

if [[ -x $build/apiextensions-apiserver && -x $build/etcd ]]; then
    say "cached build $key (same package versions): no download, no build"
    install_from "$build"
    exit 0
fi

# 3. Download and unpack into a scratch root (removed at the end; only the binaries are kept).
work=$cache/work
rm -rf "$work"
mkdir -p "$work/debs" "$work/root"
trap 'rm -rf "$work"' EXIT
(cd "$work/debs" && apt-get -q download "${packages[@]}" >"$cache/download.log" 2>&1) || {
    tail -n5 "$cache/download.log" >&2
    unreachable "apt-get download from $MIRROR failed ($(grep -E '^(E:|W: Failed)' "$cache/download.log" | head -n1 | tr -s '\t ' ' ' | cut -c1-200))"
}
for deb in "$work"/debs/*.deb; do
    dpkg -x "$deb" "$work/root"
done
say "downloaded and unpacked ${#packages[@]} packages ($(du -sm "$work/root" | cut -f1) MB)"

# 4. Build the server in GOPATH mode from the unpacked sources with the unpacked Go.
export GOROOT=$work/root/usr/lib/go-$GO_VERSION GOPATH=$work/root/usr/share/gocode GOCACHE=$work/gocache \
    GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0
[[ -e $GOROOT/src/runtime ]] || ln -sfn "$work/root/usr/share/go-$GO_VERSION/src" "$GOROOT/src"
"$GOROOT/bin/go" version
mkdir -p "$work/out"
(cd "$work" && "$GOROOT/bin/go" build -trimpath -o "$work/out/apiextensions-apiserver" k8s.io/apiextensions-apiserver) \
    >"$cache/build.log" 2>&1 || { tail -n 30 "$cache/build.log" >&2; echo "fetch-apiextensions: go build failed (log: $cache/build.log)" >&2; exit 1; }
say "built apiextensions-apiserver"
install -m 0755 "$work/root/usr/bin/etcd" "$work/out/etcd"
"$work/out/apiextensions-apiserver" --help >/dev/null
"$work/out/etcd" --version | head -n1
printf '%s\n' "${packages[@]}" | sort >"$work/out/versions.txt"

# 5. Keep the build under its key (older builds removed) and install it.
rm -rf "$build.tmp" && mv "$work/out" "$build.tmp" && mv "$build.tmp" "$build"
find "$cache/builds" -mindepth 1 -maxdepth 1 -not -name "$key" -exec rm -rf {} +
install_from "$build"
rm -rf "$work"
say "done: scratch root removed, build $key cached"
