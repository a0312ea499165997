package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// TestCatalog manages real backups the way a scheduled job and an operator
// do: four backups of a live cluster plus the leftover of a crashed one and
// one that looks to be running; list, show, then retention step by step.
func TestCatalog(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	dir := pgtest.TempDir(t, "bucket-")
	bucket := "file://" + dir
	run := func(args ...string) result {
		t.Helper()
		return cli(t, c.Env(), append(args, "--bucket", bucket)...)
	}

	var made []*manifest.Backup // oldest first
	for i := 1; i <= 4; i++ {
		c.Exec("postgres", fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid <= 1000", i))
		r := run("backup", "--fast", "--label", fmt.Sprintf("e2e %d", i), "--json")
		if r.code != 0 {
			t.Fatalf("backup %d: %s", i, r)
		}
		made = append(made, parseManifest(t, r))
	}
	newest := made[3]
	// A crashed backup's leftover (no manifest.json), last written three
	// days ago, and one written just now, as if running.
	crashed, running := "20200101T000000Z", time.Now().UTC().Format("20060102T150405Z")+"-9"
	crashedTime := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	writeObject(t, dir, crashed, []byte("partial archive"), crashedTime)
	writeObject(t, dir, running, []byte("growing archive"), time.Now())

	// The oracles: the server for what the manifest says, the bucket's
	// directory for what is stored.
	serverVersion := c.QueryString("postgres", "SHOW server_version")
	systemID := c.QueryString("postgres", "SELECT system_identifier::text FROM pg_control_system()")

	t.Run("list", func(t *testing.T) {
		r := run("list")
		if r.code != 0 {
			t.Fatal(r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 6 {
			t.Fatalf("want header, 4 backups, a note:\n%s", r.stdout)
		}
		for i, m := range []*manifest.Backup{made[3], made[2], made[1], made[0]} {
			stop := rawManifest(t, filepath.Join(dir, "backups", m.ID, "manifest.json"))["stop_lsn"].(string)
			if f := strings.Fields(lines[i+1]); f[0] != m.ID || !strings.Contains(lines[i+1], fmt.Sprintf("e2e %d", 4-i)) ||
				!strings.Contains(lines[i+1], " "+stop+" ") {
				t.Errorf("row %d, want %s (e2e %d, stop LSN %s): %q", i+1, m.ID, 4-i, stop, lines[i+1])
			}
		}
		if strings.Contains(r.stdout, crashed) || !strings.Contains(lines[5], "2 incomplete") {
			t.Errorf("incomplete backups listed without --all:\n%s", r.stdout)
		}

		var list []map[string]any
		r = run("list", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 4 {
			t.Fatalf("list --json: %v\n%s", err, r)
		}
		for i, e := range list {
			m := made[3-i]
			// Expected values from manifest.json as stored, read as plain
			// JSON: none computed by our manifest package.
			raw := rawManifest(t, filepath.Join(dir, "backups", m.ID, "manifest.json"))
			want := map[string]any{
				"id": m.ID, "status": "complete", "label": fmt.Sprintf("e2e %d", 4-i), "pg_version": serverVersion,
				"system_identifier": systemID, "start_lsn": raw["start_lsn"], "stop_lsn": raw["stop_lsn"],
				"size": rawDataSize(t, raw), "wal_included": true, "wal_archive": "off", "self_contained": true, "restorable": true, "checksums_verified": true,
				"checksum_failures": 0.0, "compression": "zstd",
				"objects":     float64(len(listFiles(t, filepath.Join(dir, "backups", m.ID)))),
				"stored_size": float64(dirBytes(t, filepath.Join(dir, "backups", m.ID))),
			}
			for k, v := range want {
				if e[k] != v {
					t.Errorf("%s: %s = %#v, want %#v", m.ID, k, e[k], v)
				}
			}
			if tm, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["time"])); err != nil || !tm.Equal(m.StopTime) {
				t.Errorf("%s: time %v, want the stop time %v", m.ID, e["time"], m.StopTime)
			}
		}

		r = run("list", "--all", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 6 {
			t.Fatalf("list --all --json: %v\n%s", err, r)
		}
		if list[0]["id"] != running || list[0]["status"] != "incomplete" {
			t.Errorf("the running backup (newest object written now) is not first: %v", list[0])
		}
		last := list[5]
		if last["id"] != crashed || last["status"] != "incomplete" || last["objects"] != 1.0 ||
			last["stored_size"] != float64(len("partial archive")) {
			t.Errorf("crashed leftover: %v", last)
		}
		if tm, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(last["time"])); !tm.Equal(crashedTime) {
			t.Errorf("crashed leftover time %v, want its object's mtime %v", last["time"], crashedTime)
		}
		if r = run("list", "--all"); !strings.Contains(r.stdout, crashed) || !strings.Contains(r.stdout, "INCOMPLETE") {
			t.Errorf("list --all:\n%s", r.stdout)
		}
	})

	t.Run("show", func(t *testing.T) {
		newestRaw := rawManifest(t, filepath.Join(dir, "backups", newest.ID, "manifest.json"))
		r := run("show", "latest")
		if r.code != 0 {
			t.Fatal(r)
		}
		for _, want := range []string{
			"backup " + newest.ID + " (complete)", newestRaw["start_lsn"].(string), newestRaw["stop_lsn"].(string),
			"system identifier:  " + systemID, "PostgreSQL:         " + serverVersion, "WAL:                included (restores without a WAL archive)",
			"page checksums:     verified, no failures", newest.Tablespaces[0].Objects[0].Key,
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("show latest lacks %q:\n%s", want, r.stdout)
			}
		}
		r = run("show", "latest", "--json")
		if stored := string(mustRead(t, filepath.Join(dir, "backups", newest.ID, "manifest.json"))); r.stdout != stored {
			t.Errorf("show --json differs from manifest.json:\n%s", r.stdout)
		}
		if r = run("show", made[0].ID); r.code != 0 || !strings.Contains(r.stdout, "label:              e2e 1") {
			t.Errorf("show %s: %s", made[0].ID, r)
		}
		r = run("show", "20190101T000000Z")
		assertOneLineError(t, r, 3, "no backup 20190101T000000Z")
		if !strings.Contains(r.stderr, "pgcloudbackup list") {
			t.Errorf("error does not point at 'pgcloudbackup list': %s", r.stderr)
		}
		assertOneLineError(t, run("show", crashed), 3, "incomplete")
		empty := cli(t, nil, "show", "latest", "--bucket", "file://"+t.TempDir())
		assertOneLineError(t, empty, 3, `no complete backup`)
	})

	t.Run("retention", func(t *testing.T) {
		assertOneLineError(t, run("delete", made[0].ID, "--retain", "2"), 2, "not both")

		before := fileStates(t, dir)
		r := run("delete", "--retain", "2", "--dry-run", "--json")
		var rep struct {
			Deleted, Kept []struct{ ID, Reason string }
			DryRun        bool `json:"dry_run"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
			t.Fatalf("dry run: %v\n%s", err, r)
		}
		if got, want := idsOf(rep.Deleted), crashed+" "+made[1].ID+" "+made[0].ID; !rep.DryRun || !sameSet(got, want) {
			t.Errorf("dry run would delete %s, want %s", got, want)
		}
		if got, want := idsOf(rep.Kept), running+" "+newest.ID+" "+made[2].ID; !sameSet(got, want) {
			t.Errorf("dry run would keep %s, want %s", got, want)
		}
		if after := fileStates(t, dir); after != before {
			t.Fatalf("--dry-run changed the bucket:\n%s\nbefore:\n%s", after, before)
		}

		r = run("delete", "--retain", "2")
		if r.code != 0 || !strings.Contains(r.stdout, "deleted "+made[0].ID) {
			t.Fatalf("delete --retain 2: %s", r)
		}
		if got, want := backupDirs(t, dir), []string{made[2].ID, newest.ID, running}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after --retain 2 the bucket holds %v, want %v", got, want)
		}

		// --older-than 0s covers every backup: the newest complete one
		// survives all the same, and so does the running one.
		r = run("delete", "--older-than", "0s")
		if r.code != 0 || !strings.Contains(r.stdout, "deleted "+made[2].ID) ||
			!strings.Contains(r.stdout, "kept "+newest.ID) || !strings.Contains(r.stdout, "newest complete backup") {
			t.Fatalf("delete --older-than 0s: %s", r)
		}
		if got, want := backupDirs(t, dir), []string{newest.ID, running}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after --older-than 0s the bucket holds %v, want %v", got, want)
		}
		if r = run("show", "latest", "--json"); r.code != 0 || parseManifest(t, r).ID != newest.ID {
			t.Errorf("the newest backup is not whole after retention: %s", r)
		}

		assertOneLineError(t, run("delete", newest.ID), 3, "newest complete backup")
		if r = run("delete", newest.ID, "--force"); r.code != 0 {
			t.Fatalf("delete --force: %s", r)
		}
		if r = run("list", "--json"); strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("list after deleting everything: %s", r)
		}
	})
}

// writeObject puts one archive object of backup id straight into the
// bucket directory, modified at mtime.
func writeObject(t *testing.T, dir, id string, data []byte, mtime time.Time) {
	t.Helper()
	p := filepath.Join(dir, "backups", id, "base.00001.tar.zst")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, f := range listFiles(t, dir) {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// fileStates is every file below dir with its size and mtime.
func fileStates(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range listFiles(t, dir) {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %s\n", f, info.Size(), info.ModTime())
	}
	return b.String()
}

// backupDirs lists the backup directories in the bucket, sorted.
func backupDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

func idsOf(list []struct{ ID, Reason string }) string {
	var ids []string
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	return strings.Join(ids, " ")
}

// sameSet reports whether two space-separated lists hold the same words.
func sameSet(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	sort.Strings(x)
	sort.Strings(y)
	return strings.Join(x, " ") == strings.Join(y, " ")
}

// rawManifest reads a manifest.json as plain JSON.
func rawManifest(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(mustRead(t, path), &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// rawDataSize sums the "size" of every tablespace of a raw manifest.json.
func rawDataSize(t *testing.T, m map[string]any) float64 {
	t.Helper()
	spcs, ok := m["tablespaces"].([]any)
	if !ok || len(spcs) == 0 {
		t.Fatalf("manifest.json has no tablespaces: %v", m)
	}
	var n float64
	for _, s := range spcs {
		size, ok := s.(map[string]any)["size"].(float64)
		if !ok || size <= 0 {
			t.Fatalf("tablespace without a size: %v", s)
		}
		n += size
	}
	return n
}
