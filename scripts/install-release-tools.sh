#!/usr/bin/env bash
# Installs the release tool at a pinned version (from the Go module proxy)
# into $PGCLOUDBACKUP_TOOLS/bin (default .tools/bin); a no-op when present.
set -euo pipefail
cd "$(dirname "$0")/.."
GORELEASER_VERSION=v2.15.1
TOOLS="${PGCLOUDBACKUP_TOOLS:-$PWD/.tools}"
mkdir -p "$TOOLS/bin"
bin="$TOOLS/bin/goreleaser"
if [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -q "${GORELEASER_VERSION#v}"; then
	exit 0
fi
echo "install-release-tools: building goreleaser $GORELEASER_VERSION (a few minutes the first time)" >&2
GOBIN="$TOOLS/bin" go install "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION"
