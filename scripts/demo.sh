#!/usr/bin/env bash
# make demo: a throw-away PostgreSQL cluster with sample data (a tablespace
# and an unlogged table included), backed up into a local file:// bucket,
# listed, verified, restored into a new directory and started — no cloud
# account and no existing database needed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN="$PWD/bin/pgcloudbackup"
DEMO="${DEMO_DIR:-${TMPDIR:-/tmp}/pgcloudbackup-demo}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

PGBIN=$(pg_bindir)
if [[ -z "$PGBIN" || ! -x "$PGBIN/initdb" ]]; then
	say "PostgreSQL server binaries not found: installing postgresql with apt"
	SUDO=; [[ $(id -u) -ne 0 ]] && SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	PGBIN=$(pg_bindir)
fi

stop_servers() {
	for d in "$DEMO/data" "$DEMO/restored"; do
		[[ -f "$d/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1 || true
	done
}
stop_servers
rm -rf "$DEMO"
mkdir -p "$DEMO"
[[ $(id -u) -eq 0 ]] && chown postgres: "$DEMO"
trap stop_servers EXIT

PORT=$(free_port 54329)
export PGHOST="$DEMO" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres

say "creating a throw-away cluster in $DEMO/data (initdb --data-checksums, port $PORT)"
as_pg "$PGBIN/initdb" -D "$DEMO/data" -U postgres --auth=trust --data-checksums -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/server.log" -w \
	-o "-p $PORT -k $DEMO -c listen_addresses=''" start >/dev/null

say "sample data: pgbench scale 5, a table in its own tablespace, an unlogged table"
"$PGBIN/pgbench" -i -q -s 5 >/dev/null 2>&1
as_pg mkdir "$DEMO/tblspc"
"$PGBIN/psql" -qX -v ON_ERROR_STOP=1 <<SQL
CREATE TABLESPACE demo_space LOCATION '$DEMO/tblspc';
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric) TABLESPACE demo_space;
INSERT INTO orders SELECT g, 'customer ' || (g % 1000), (g % 997) * 1.25 FROM generate_series(1, 200000) g;
CREATE UNLOGGED TABLE sessions (id int, data text);
INSERT INTO sessions SELECT g, md5(g::text) FROM generate_series(1, 10000) g;
SQL

BUCKET="file://$DEMO/bucket"
mkdir -p -m 700 "$DEMO/bucket" # the tool never creates a file:// bucket directory
say "backup: $BIN backup --bucket $BUCKET --fast --wal --progress"
"$BIN" backup --bucket "$BUCKET" --fast --wal --progress

say "what was stored in $DEMO/bucket"
(cd "$DEMO/bucket" && find . -type f -printf '%10s  %P\n' | sort -k2)

say "pgcloudbackup list"
"$BIN" list --bucket "$BUCKET"
{
	OID=$("$PGBIN/psql" -qAtX -c "SELECT oid FROM pg_tablespace WHERE spcname = 'demo_space'")
	say "verify: download every object and check it against the manifests"
	"$BIN" verify latest --bucket "$BUCKET"
	say "restore latest into $DEMO/restored (tablespace $OID moved to $DEMO/restored-tblspc)"
	# As root, restored files keep the backup's owner (postgres), as tar does.
	"$BIN" restore latest --bucket "$BUCKET" --target "$DEMO/restored" --tablespace-map "$OID=$DEMO/restored-tblspc"
	say "pg_verifybackup on the restored directory (PostgreSQL's own check, before it starts)"
	"$PGBIN/pg_verifybackup" "$DEMO/restored"
	RPORT=$(free_port $((PORT + 1)))
	say "starting the restored cluster on port $RPORT"
	as_pg "$PGBIN/pg_ctl" -D "$DEMO/restored" -l "$DEMO/restored.log" -w \
		-o "-p $RPORT -k $DEMO -c listen_addresses=''" start >/dev/null
	for t in pgbench_accounts orders sessions; do
		src=$("$PGBIN/psql" -qAtX -c "SELECT count(*) FROM $t")
		dst=$("$PGBIN/psql" -qAtX -p "$RPORT" -c "SELECT count(*) FROM $t")
		printf '  %-18s source %8s rows, restored %8s rows\n' "$t" "$src" "$dst"
	done
	echo "  (the unlogged table is empty after a restore, as after a crash)"
}

say "done — the demo lives in $DEMO (servers stopped; rm -rf $DEMO to clean up)"
