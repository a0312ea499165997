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
# Runs, each $BENCH_REPEAT times (3; the median is shown), timed with
# /usr/bin/time (elapsed seconds, peak RSS of our process or pg_basebackup's
# client process; the server's walsender that reads the files for
# pg_basebackup is not counted):
#   pg_basebackup -Ft --compress=client-zstd:1 -c fast   to local disk
#   pgcloudbackup backup --wal --fast --jobs 1|2          to file:// (local disk)
#   pgcloudbackup backup --wal --fast --jobs 1|2          to MinIO over TLS on loopback
# (pg_basebackup streams the WAL it needs too, its default -X stream.)
# Page caches cannot be dropped here (no root over the host), so the data
# directory is read once before the runs and every run reads it warm.
# MinIO (from .tools/bin, see scripts/install-test-services.sh) runs on
# the same cores as the backup.
#
# Environment: PGCLOUDBACKUP_BIN (default bin/pgcloudbackup), BENCH_DIR,
# BENCH_SCALE, BENCH_NOISE_ROWS, BENCH_REPEAT, PG_BINDIR.
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
DATA="$BENCH/data"
RUN="$BENCH/run" # sockets, logs, outputs, MinIO: removed at the end

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[[ -x "$BIN" ]] || die "$BIN not found: run make build (or set PGCLOUDBACKUP_BIN)"
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

# --- dataset ---------------------------------------------------------------
recipe="scale=$SCALE noise_rows=$NOISE_ROWS bytes=1000 pg=$("$PGBIN/postgres" --version)"
if [[ -f "$BENCH/dataset.ok" && "$(cat "$BENCH/dataset.ok")" == "$recipe" ]]; then
	say "reusing the dataset in $DATA ($recipe)"
	start_pg
else
	say "building the dataset in $DATA ($recipe); this takes a few minutes, once"
	rm -rf "$DATA" "$BENCH/dataset.ok"
	as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --data-checksums -E UTF8 --locale=C --no-sync >/dev/null
	start_pg
	"$PGBIN/pgbench" -i -q -s "$SCALE" >/dev/null 2>&1 || die "pgbench -i failed"
	psql_ -c "CREATE TABLE noise (id int, payload bytea)" \
		-c "ALTER TABLE noise ALTER COLUMN payload SET STORAGE EXTERNAL"
	if psql_ -c "CREATE EXTENSION IF NOT EXISTS pgcrypto" 2>/dev/null; then
		say "random rows from pgcrypto's gen_random_bytes"
		psql_ -c "INSERT INTO noise SELECT g, gen_random_bytes(1000) FROM generate_series(1, $NOISE_ROWS) g"
	else
		say "pgcrypto not installed: random rows from md5 digests of random()"
		psql_ -c "INSERT INTO noise SELECT g, substring((SELECT string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea)
			FROM generate_series(1, 63) i) FOR 1000) FROM generate_series(1, $NOISE_ROWS) g"
	fi
	psql_ -c "VACUUM (FREEZE, ANALYZE)" -c "CHECKPOINT"
	echo "$recipe" >"$BENCH/dataset.ok"
fi
DATA_BYTES=$(($(du -sb "$DATA" | cut -f1) - $(du -sb "$DATA/pg_wal" | cut -f1)))
say "data directory: $((DATA_BYTES / 1000000)) MB without pg_wal; $(psql_ -c "SELECT pg_size_pretty(pg_total_relation_size('noise'))") of it random rows"
say "warm-up: reading the data directory once (page caches cannot be dropped here)"
find "$DATA" -type f -print0 | xargs -0 cat >/dev/null

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
MINIO_URL="s3://bench/run?endpoint=https://127.0.0.1:$MPORT&use_path_style=true&region=us-east-1"

# --- runs --------------------------------------------------------------------
rows=()
# measure NAME TARGET CMD...: runs CMD $REPEAT times under /usr/bin/time,
# each from an empty output; adds a row with the median seconds and the
# largest peak RSS.
measure() {
	local name=$1 target=$2 i secs kib peak=0 times=()
	shift 2
	for i in $(seq "$REPEAT"); do
		rm -rf "$RUN/pgbb" "$RUN/files"
		mkdir -m 700 "$RUN/files" # file:// buckets are never created by the tool
		say "$name → $target ($i/$REPEAT): $*"
		/usr/bin/time -f '%e %M' -o "$RUN/time" "$@" >"$RUN/out" 2>&1 || {
			cat "$RUN/out" >&2
			die "$name to $target failed"
		}
		read -r secs kib <"$RUN/time"
		times+=("$secs")
		if ((kib > peak)); then peak=$kib; fi
	done
	secs=$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(((REPEAT + 1) / 2))p")
	say "$name → $target: ${times[*]} s"
	rows+=("$name|$target|$secs|$peak")
}

measure pg_basebackup "local disk" "$PGBIN/pg_basebackup" -D "$RUN/pgbb" -Ft --compress=client-zstd:1 -c fast
PGBB_BYTES=$(du -sb "$RUN/pgbb" | cut -f1)
for jobs in 1 2; do
	measure "pgcloudbackup -j$jobs" "file://" "$BIN" backup --bucket "file://$RUN/files" --wal --fast --quiet --jobs "$jobs"
done
OURS_BYTES=$(du -sb "$RUN/files" | cut -f1)
rm -rf "$RUN/pgbb" "$RUN/files"
for jobs in 1 2; do
	measure "pgcloudbackup -j$jobs" "MinIO TLS" "$BIN" backup --bucket "$MINIO_URL" --wal --fast --quiet --jobs "$jobs"
done

# --- report ------------------------------------------------------------------
base_secs=$(cut -d'|' -f3 <<<"${rows[0]}")
echo
printf 'data: %d MB (data directory without pg_wal; MB = 10^6 bytes), %d cores, warm page cache, median of %d runs\n' \
	"$((DATA_BYTES / 1000000))" "$(nproc)" "$REPEAT"
printf 'stored: pg_basebackup %d MB, pgcloudbackup %d MB (pg_basebackup: zstd level 1; ours: zstd fastest, literals not entropy-coded)\n\n' \
	"$((PGBB_BYTES / 1000000))" "$((OURS_BYTES / 1000000))"
printf '%-20s %-11s %8s %8s %13s %20s\n' tool target seconds MB/s "peak RSS MiB" "time/pg_basebackup"
for row in "${rows[@]}"; do
	IFS='|' read -r name target secs kib <<<"$row"
	awk -v n="$name" -v tg="$target" -v s="$secs" -v k="$kib" -v b="$DATA_BYTES" -v base="$base_secs" \
		'BEGIN { printf "%-20s %-11s %8.1f %8.0f %13.0f %20.2f\n", n, tg, s, b / 1e6 / s, k / 1024, s / base }'
done
