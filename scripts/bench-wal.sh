#!/usr/bin/env bash
# make bench-wal (and part of make bench): WAL archiving figures against
# MinIO over TLS on loopback, from the e2e benchmarks (e2e/walbench*_test.go):
#   TestBenchWAL         wal-push of N pgbench segments, serial and with
#                        --push-ahead 4/8 (segments/s, per-call p50/p95/max);
#                        wal-fetch call by call with and without --prefetch
#   TestBenchWALRecovery a real recovery: restore a base backup taken
#                        before those N segments, PostgreSQL replays them
#                        through restore_command = wal-fetch, with
#                        --prefetch 8 and 0 (server start to promotion)
#   TestBenchWALKeepUp   pgbench -c 4 for S seconds with archive_command =
#                        wal-push --push-ahead 4: WAL written vs archived,
#                        .ready files and lag at the end, catch-up time
# Environment: BENCH_WAL_SEGMENTS (N, 200), BENCH_WAL_KEEPUP (S, 60).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${BENCH_WAL_SEGMENTS:-200}"
S="${BENCH_WAL_KEEPUP:-60}"
echo "==> WAL benchmark: $N segments, pgbench keep-up $S s; load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
PGCB_WAL_BENCH="$N" PGCB_WAL_KEEPUP="$S" go test -count=1 -timeout 90m -v \
	-run '^(TestBenchWAL|TestBenchWALRecovery|TestBenchWALKeepUp)$' ./e2e/ 2>&1 |
	grep -E '^\s+walbench.*_test\.go:[0-9]+:|^(--- |FAIL|ok|PASS)' | sed -E 's/^\s+walbench[a-z_]*_test\.go:[0-9]+: /  /'
echo "==> load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
