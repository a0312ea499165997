#!/usr/bin/env bash
# Installs the storage servers the integration tests start (internal/testsvc)
# into <repo>/.tools (or $PGCLOUDBACKUP_TOOLS), at pinned versions:
#   bin/minio                MinIO (S3), built with go install (~7 min cold)
#   bin/fake-gcs-server      fake-gcs-server (GCS), built with go install
#   npm/node_modules/.bin/azurite-blob   Azurite (Azure Blob), from npm,
#                            linked as bin/azurite-blob
# Idempotent: a tool already there at its pinned version is left alone (Go
# binaries are checked with `go version -m`, Azurite by its package.json).
#   --check   report only; exit 1 when something is missing or outdated.
set -euo pipefail

# Pinned versions: change them here only.
MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FAKE_GCS_MODULE=github.com/fsouza/fake-gcs-server
FAKE_GCS_VERSION=v1.56.1
AZURITE_VERSION=3.37.0

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${PGCLOUDBACKUP_TOOLS:-$root/.tools}"
bin="$tools/bin"
check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

say() { echo "install-test-services: $*"; }
missing=0

# go_tool NAME MODULE VERSION: go install MODULE@VERSION into $bin unless the
# binary there was built from that module version.
go_tool() {
	local name=$1 module=$2 version=$3 have=""
	if [[ -x "$bin/$name" ]]; then
		have=$(go version -m "$bin/$name" 2>/dev/null | awk -v m="$module" '$1 == "mod" && $2 == m { print $3 }')
	fi
	if [[ "$have" == "$version" ]]; then
		say "$name $version already installed ($bin/$name)"
		return
	fi
	if $check_only; then
		say "$name: have '${have:-none}', want $version"
		missing=1
		return
	fi
	say "building $name $version (was: ${have:-not installed}) with go install $module@$version"
	mkdir -p "$bin"
	# Outside the repository: the tools are not dependencies of our module.
	(cd "$(mktemp -d)" && GOBIN="$bin" GOFLAGS=-mod=mod go install "$module@$version")
	say "$name installed: $bin/$name"
}

azurite() {
	local pkg="$tools/npm/node_modules/azurite/package.json" have=""
	if [[ -f "$pkg" ]] && command -v node >/dev/null 2>&1; then
		have=$(node -p "require(process.argv[1]).version" "$pkg" 2>/dev/null || true)
	fi
	if [[ "$have" == "$AZURITE_VERSION" ]]; then
		say "azurite $AZURITE_VERSION already installed ($tools/npm)"
	elif $check_only; then
		say "azurite: have '${have:-none}', want $AZURITE_VERSION"
		missing=1
		return
	else
		if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
			if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
				say "installing nodejs and npm (apt-get)"
				apt-get update -qq
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
			else
				say "Azurite needs node and npm: install them (e.g. apt-get install nodejs npm)" >&2
				exit 1
			fi
		fi
		say "installing azurite $AZURITE_VERSION (was: ${have:-not installed}) with npm into $tools/npm"
		mkdir -p "$tools/npm"
		npm install --prefix "$tools/npm" --save-exact --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
	fi
	# testsvc looks in bin/ first; keep one place for every server.
	mkdir -p "$bin"
	ln -sfn ../npm/node_modules/.bin/azurite-blob "$bin/azurite-blob"
}

if ! command -v go >/dev/null 2>&1; then
	say "go is not on PATH" >&2
	exit 1
fi
go_tool fake-gcs-server "$FAKE_GCS_MODULE" "$FAKE_GCS_VERSION"
azurite
go_tool minio "$MINIO_MODULE" "$MINIO_VERSION"

if $check_only && ((missing)); then
	say "some test services are missing or outdated: run scripts/install-test-services.sh"
	exit 1
fi
say "ok ($bin)"
