#!/usr/bin/env bash
# make bench: throughput and peak memory of `pgcloudbackup backup` against
# pg_basebackup on the same cluster.
#
# Dataset (made once, cached in $BENCH_DIR, default .tools/bench, reused
# while its recipe is unchanged): a cluster with data checksums holding
# pgbench scale $BENCH_SCALE (50) and $BENCH_NOISE_ROWS (600k) rows of 1000
# random bytes (pgcrypto's gen_random_bytes when postgresql-contrib is
# installed, else bytes of md5 digests), as bytea with STORAGE EXTERNAL so
# TOAST does not try to compress them.
#
# Runs, each $BENCH_REPEAT times (3; the median time and the median peak
# RSS are shown), timed with /usr/bin/time (elapsed seconds, peak RSS of our
# process or pg_basebackup's client process; the server's walsender that
# reads the files for pg_basebackup is not counted):
#   pg_basebackup -Ft --compress=client-zstd:1 -c fast   to local disk
#   pgcloudbackup backup --wal --fast --jobs 1|2          to file:// (local disk)
#   pgcloudbackup backup --wal --fast --jobs 1|2          to MinIO over TLS on loopback
#   pgcloudbackup restore latest (defaults)                from MinIO over TLS
# (pg_basebackup streams the WAL it needs too, its default -X stream.)
# Then the same backup and restore (defaults, MinIO) of a cluster of many
# small files: $BENCH_FILES (30000) one-row tables with a primary key, about
# 120,000 files; BENCH_FILES=0 skips it. A third cluster of about 5 GB
# (pgbench scale 150 and 2.4M random rows; building it takes ~10 minutes,
# once) shows that memory does not grow with the data; BENCH_BIG=0 skips it.
# The report ends with the spread of the backup's peak RSS over the
# clusters (the promise: flat, within 10%).
#
# BENCH_BINS="old=/tmp/old-binary new=bin/pgcloudbackup" compares builds:
# every run alternates between them (old, new, old, new, ...), so both see
# the same machine load; each gets its own rows. BENCH_PROFILE_DIR=DIR
# keeps a heap profile of each of our runs taken at its memory peak
# (PGCLOUDBACKUP_MEMPROFILE; `go tool pprof -top DIR/FILE`).
# Page caches cannot be dropped here (no root over the host), so the data
# directory is read once before the runs and every run reads it warm.
# MinIO (from .tools/bin, see scripts/install-test-services.sh) runs on
# the same cores as the backup.
#
# Environment: PGCLOUDBACKUP_BIN (default bin/pgcloudbackup), BENCH_BINS,
# BENCH_DIR, BENCH_SCALE, BENCH_NOISE_ROWS, BENCH_FILES, BENCH_BIG,
# BENCH_REPEAT, BENCH_PROFILE_DIR, PG_BINDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROOT=$PWD
BIN="${PGCLOUDBACKUP_BIN:-$ROOT/bin/pgcloudbackup}"
BENCH="${BENCH_DIR:-$ROOT/.tools/bench}"
SCALE="${BENCH_SCALE:-50}"
NOISE_ROWS="${BENCH_NOISE_ROWS:-600000}"
REPEAT="${BENCH_REPEAT:-3}"
FILES="${BENCH_FILES:-30000}"
BIG="${BENCH_BIG:-1}"
PROFILE_DIR="${BENCH_PROFILE_DIR:-}"
read -r -a BINS <<<"${BENCH_BINS:-pgcloudbackup=$BIN}"
DATA="$BENCH/data"
RUN="$BENCH/run" # sockets, logs, outputs, MinIO: removed at the end

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

for b in "${BINS[@]}"; do
	[[ "$b" == *=* && -x "${b#*=}" ]] || die "${b#*=} not found: run make build (or set PGCLOUDBACKUP_BIN, or BENCH_BINS=label=path ...)"
done
[[ -z "$PROFILE_DIR" ]] || mkdir -p "$PROFILE_DIR"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install time"
PGBIN="${PG_BINDIR:-$(pg_bindir)}"
[[ -x "$PGBIN/initdb" ]] || die "PostgreSQL server binaries not found: run make deps (or set PG_BINDIR)"
MINIO="${PGCLOUDBACKUP_TOOLS:-$ROOT/.tools}/bin/minio"
[[ -x "$MINIO" ]] || die "$MINIO not found: run scripts/install-test-services.sh"


MINIO_PID=
cleanup() {
	[[ -n "$MINIO_PID" ]] && kill "$MINIO_PID" 2>/dev/null && wait "$MINIO_PID" 2>/dev/null
	[[ -f "$DATA/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1
	rm -rf "$RUN"
	return 0
}
trap cleanup EXIT

rm -rf "$RUN"
mkdir -p "$BENCH" "$RUN"
[[ $(id -u) -eq 0 ]] && chown postgres: "$BENCH" "$RUN"
PORT=$(free_port 55432)
export PGHOST="$RUN" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres
start_pg() {
	as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$RUN/server.log" -w -t 300 \
		-o "-p $PORT -k $RUN -c listen_addresses=''" start >/dev/null
}
psql_() { "$PGBIN/psql" -qAtX -v ON_ERROR_STOP=1 "$@"; }

# --- MinIO over TLS --------------------------------------------------------
MPORT=$(free_port 59000)
MDIR="$RUN/minio"
mkdir -p "$MDIR/certs" "$MDIR/data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$MDIR/certs/private.key" -out "$MDIR/certs/public.crt" 2>/dev/null
AK=benchuser
SK=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
MINIO_ROOT_USER=$AK MINIO_ROOT_PASSWORD=$SK MINIO_BROWSER=off MINIO_UPDATE=off HOME="$MDIR" \
	"$MINIO" server --quiet --address "127.0.0.1:$MPORT" --console-address 127.0.0.1:0 \
	--certs-dir "$MDIR/certs" "$MDIR/data" >"$MDIR/minio.log" 2>&1 &
MINIO_PID=$!
for _ in $(seq 1 300); do
	curl -sf --cacert "$MDIR/certs/public.crt" "https://127.0.0.1:$MPORT/minio/health/ready" >/dev/null && break
	sleep 0.1
done
s3() { curl -sSf --cacert "$MDIR/certs/public.crt" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" \
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
s3 -X PUT "https://127.0.0.1:$MPORT/bench" >/dev/null || die "could not create the MinIO bucket (see $MDIR/minio.log)"
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1 AWS_CA_BUNDLE="$MDIR/certs/public.crt" \
	AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN
# minio_url PREFIX: the bucket URL of PREFIX in the MinIO bucket.
minio_url() { echo "s3://bench/$1?endpoint=https://127.0.0.1:$MPORT&use_path_style=true&region=us-east-1"; }

# --- datasets ----------------------------------------------------------------
stop_pg() { as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; }
# dataset NAME KIND ARGS: makes (once; cached while its recipe is unchanged)
# and starts the cluster $BENCH/NAME, setting DATA and DATA_BYTES. KIND
# pgbench SCALE ROWS: pgbench tables plus ROWS random 1000-byte rows; KIND
# files N: N one-row tables with a primary key (about four files each:
# heap, index, visibility map, free space map).
dataset() {
	local name=$1 kind=$2 a=$3 b=${4:-}
	DATA="$BENCH/$name"
	local recipe="$kind $a $b bytes=1000 pg=$("$PGBIN/postgres" --version)"
	if [[ -f "$DATA.ok" && "$(cat "$DATA.ok")" == "$recipe" ]]; then
		say "reusing the dataset in $DATA ($recipe)"
		start_pg
	else
		say "building the dataset in $DATA ($recipe); this takes a few minutes, once"
		rm -rf "$DATA" "$DATA.ok"
		as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --data-checksums -E UTF8 --locale=C --no-sync >/dev/null
		start_pg
		if [[ $kind == pgbench ]]; then
			"$PGBIN/pgbench" -i -q -s "$a" >/dev/null 2>&1 || die "pgbench -i failed"
			psql_ -c "CREATE TABLE noise (id int, payload bytea)" \
				-c "ALTER TABLE noise ALTER COLUMN payload SET STORAGE EXTERNAL"
			if psql_ -c "CREATE EXTENSION IF NOT EXISTS pgcrypto" 2>/dev/null; then
				say "random rows from pgcrypto's gen_random_bytes"
				psql_ -c "INSERT INTO noise SELECT g, gen_random_bytes(1000) FROM generate_series(1, $b) g"
			else
				say "pgcrypto not installed: random rows from md5 digests of random()"
				psql_ -c "INSERT INTO noise SELECT g, substring((SELECT string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea)
					FROM generate_series(1, 63) i) FOR 1000) FROM generate_series(1, $b) g"
			fi
		else
			# One row each: a heap and an index file per table, and the
			# maps VACUUM adds.
			psql_ -c "DO \$\$ BEGIN FOR i IN 1..$a LOOP
				EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY); INSERT INTO t%s VALUES (1)', i, i);
				IF i % 1000 = 0 THEN COMMIT; END IF; END LOOP; END \$\$"
		fi
		psql_ -c "VACUUM (FREEZE, ANALYZE)" -c "CHECKPOINT"
		echo "$recipe" >"$DATA.ok"
	fi
	DATA_BYTES=$(($(du -sb "$DATA" | cut -f1) - $(du -sb "$DATA/pg_wal" | cut -f1)))
	DATA_FILES=$(find "$DATA" -type f | wc -l)
	say "data directory: $((DATA_BYTES / 1000000)) MB without pg_wal, $DATA_FILES files"
	say "warm-up: reading the data directory once (page caches cannot be dropped here)"
	find "$DATA" -type f -print0 | xargs -0 cat >/dev/null
}

# --- runs --------------------------------------------------------------------
rows=()
# measure CLUSTER NAME TARGET CMD...: runs CMD $REPEAT times under
# /usr/bin/time, each from an empty output; adds a row with the median
# seconds and the median peak RSS. In CMD, @BIN@ stands for our binary: with
# several BENCH_BINS the runs alternate between them, one row each.
measure() {
	local cluster=$1 name=$2 target=$3 i b label bin secs kib key
	shift 3
	local -A times=() rss=()
	for i in $(seq "$REPEAT"); do
		for b in "${BINS[@]}"; do
			label=${b%%=*} bin=${b#*=}
			local cmd=("${@//@BIN@/$bin}")
			rm -rf "$RUN/pgbb" "$RUN/files" "$RUN/restore"
			mkdir -m 700 "$RUN/files" # file:// buckets are never created by the tool
			mkdir -p "$RUN/restore"
			say "$cluster: $name ($label) → $target ($i/$REPEAT): ${cmd[*]}"
			local prof=
			[[ -z "$PROFILE_DIR" ]] || prof="$PROFILE_DIR/$cluster-${name// /_}-${target//[^A-Za-z]/}-$label-$i.pprof"
			PGCLOUDBACKUP_MEMPROFILE=$prof /usr/bin/time -f '%e %M' -o "$RUN/time" "${cmd[@]}" >"$RUN/out" 2>&1 || {
				cat "$RUN/out" >&2
				die "$name to $target failed"
			}
			read -r secs kib <"$RUN/time"
			times[$label]+="$secs " rss[$label]+="$kib "
		done
	done
	for b in "${BINS[@]}"; do
		label=${b%%=*}
		if [[ "$name" == pg_basebackup ]]; then label=pg_basebackup; fi
		secs=$(printf '%s\n' ${times[$label]} | sort -g | sed -n "$(((REPEAT + 1) / 2))p")
		kib=$(printf '%s\n' ${rss[$label]} | sort -g | sed -n "$(((REPEAT + 1) / 2))p")
		say "$cluster: $name ($label) → $target: ${times[$label]}s, peak RSS KiB ${rss[$label]}"
		rows+=("$cluster|$name|$label|$target|$secs|$kib|$DATA_BYTES")
		if [[ "$name" == pg_basebackup ]]; then break; fi
	done
}
# pgbb runs pg_basebackup once per repeat (no alternation).
pgbb() {
	local saved=("${BINS[@]}")
	BINS=("pg_basebackup=$PGBIN/pg_basebackup")
	measure "$1" pg_basebackup "local disk" "$PGBIN/pg_basebackup" -D "$RUN/pgbb" -Ft --compress=client-zstd:1 -c fast
	BINS=("${saved[@]}")
}

# bench_cluster CLUSTER FULL: backups (and with FULL the -j1 and file:// ones
# and pg_basebackup) and a restore of the running cluster.
bench_cluster() {
	local c=$1 full=$2
	if [[ $full == 1 ]]; then
		pgbb "$c"
		PGBB_BYTES=$(du -sb "$RUN/pgbb" | cut -f1)
		for jobs in 1 2; do
			measure "$c" "backup -j$jobs" "file://" @BIN@ backup --bucket "file://$RUN/files" --wal --fast --quiet --jobs "$jobs"
		done
		OURS_BYTES=$(du -sb "$RUN/files" | cut -f1)
		measure "$c" "backup -j1" "MinIO TLS" @BIN@ backup --bucket "$(minio_url "$c")" --wal --fast --quiet --jobs 1
	fi
	measure "$c" "backup -j2" "MinIO TLS" @BIN@ backup --bucket "$(minio_url "$c")" --wal --fast --quiet --jobs 2
	measure "$c" "restore -j2" "MinIO TLS" @BIN@ restore latest --bucket "$(minio_url "$c")" --target "$RUN/restore/data" --quiet --jobs 2
	rm -rf "${MDIR:?}/data/bench/$c" # this cluster's backups: gigabytes, not read again
	stop_pg
}

dataset data pgbench "$SCALE" "$NOISE_ROWS"
bench_cluster "$((DATA_BYTES / 1000000))MB" 1
if [[ "$FILES" -gt 0 ]]; then
	dataset files files "$FILES"
	bench_cluster "${DATA_FILES}files" 0
fi
if [[ "$BIG" == 1 ]]; then
	dataset big pgbench 150 2400000
	bench_cluster "$((DATA_BYTES / 1000000))MB" 0
fi

# --- report ------------------------------------------------------------------
echo
printf '%d cores, load average %s, warm page cache, median of %d runs (time and peak RSS)\n' \
	"$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$REPEAT"
printf 'stored (first cluster): pg_basebackup %d MB, pgcloudbackup %d MB (pg_basebackup: zstd level 1; ours: zstd fastest, literals not entropy-coded)\n\n' \
	"$((PGBB_BYTES / 1000000))" "$((OURS_BYTES / 1000000))"
printf '%-14s %-14s %-14s %-11s %8s %8s %13s\n' cluster run binary target seconds MB/s "peak RSS MiB"
for row in "${rows[@]}"; do
	IFS='|' read -r cluster name label target secs kib bytes <<<"$row"
	awk -v c="$cluster" -v n="$name" -v l="$label" -v tg="$target" -v s="$secs" -v k="$kib" -v b="$bytes" \
		'BEGIN { printf "%-14s %-14s %-14s %-11s %8.1f %8.0f %13.0f\n", c, n, l, tg, s, b / 1e6 / s, k / 1024 }'
done
# Flat memory: the backup (defaults, MinIO) on every cluster, per binary.
echo
for b in "${BINS[@]}"; do
	label=${b%%=*}
	printf '%s\n' "${rows[@]}" | awk -F'|' -v l="$label" '$2 == "backup -j2" && $3 == l && $4 == "MinIO TLS" {
		mib = $6 / 1024; n++; s = s sprintf("%s %.0f MiB, ", $1, mib)
		if (n == 1 || mib < lo) lo = mib; if (n == 1 || mib > hi) hi = mib }
		END { if (n > 1) printf "backup -j2 peak RSS (%s): %sspread %.0f%% (max/min - 1)\n", l, s, (hi / lo - 1) * 100 }'
done
