# Shell helpers shared by demo.sh and bench.sh (sourced, not run).

# pg_bindir prints the newest PostgreSQL server bin directory ("" if none).
pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	if [[ -z "$d" ]] && command -v pg_config >/dev/null; then d=$(pg_config --bindir); fi
	echo "$d"
}

# as_pg runs a command as the postgres user when we are root: PostgreSQL
# refuses to run as root.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
	else
		"$@"
	fi
}

# free_port prints the first TCP port from $1 on that nothing listens on.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}
