package pagecheck

import "strings"

// ShouldVerifyRelation is PostgreSQL 17's rule (and 18's) for which files get
// page checksum verification, replacing ShouldVerify's list of exceptions:
// only files whose name parses as a relation file ("<relfilenumber>[_<fork>]
// [.<segment>]", as parse_filename_for_nontemp_relation) in a directory that
// holds relations — global/, base/<dboid>, and <PG_x_y>/<dboid> in a
// tablespace. Anything else (pg_filenode.map, PG_VERSION, a stray file) is
// copied unverified. relPath is as for ShouldVerify.
func ShouldVerifyRelation(relPath string, inTablespace bool) (verify bool, segno uint32) {
	p := strings.TrimPrefix(relPath, "./")
	slash := strings.LastIndexByte(p, '/')
	if slash < 0 {
		return false, 0
	}
	dir, name := p[:slash], p[slash+1:]
	if !isRelationDir(dir, inTablespace) {
		return false, 0
	}
	f, ok := ParseRelationFileName(name)
	return ok, f.Segment
}

// isRelationDir: "global", "base/<digits>" in the data directory;
// "<PG_*>/<digits>" in a tablespace.
func isRelationDir(dir string, inTablespace bool) bool {
	if !inTablespace && dir == "global" {
		return true
	}
	parent, db, ok := strings.Cut(dir, "/")
	if !ok || !AllDigits(db) {
		return false
	}
	if inTablespace {
		return strings.HasPrefix(parent, "PG_")
	}
	return parent == "base"
}

// RelationFile is a relation file name taken apart:
// "<relfilenumber>[_fsm|_vm|_init][.<segment>]".
type RelationFile struct {
	Number  string // the relfilenumber, as digits
	Fork    string // "" for the main fork, else fsm, vm or init
	Segment uint32 // 0 without a suffix
}

// ParseRelationFileName is PostgreSQL's parse_filename_for_nontemp_relation:
// a non-zero relfilenumber of at most 10 digits (OIDCHARS), an optional
// fork and an optional segment number. The one parser of relation file
// names: page verification and the engine's unlogged and temporary
// relation exclusions both use it.
func ParseRelationFileName(name string) (RelationFile, bool) {
	i := 0
	for i < len(name) && name[i] >= '0' && name[i] <= '9' {
		i++
	}
	if i == 0 || i > 10 {
		return RelationFile{}, false
	}
	var rel uint64
	for _, c := range name[:i] {
		rel = rel*10 + uint64(c-'0')
	}
	if rel == 0 || rel > 1<<32-1 {
		return RelationFile{}, false // not a valid RelFileNumber
	}
	f := RelationFile{Number: name[:i]}
	rest := name[i:]
	if r, ok := strings.CutPrefix(rest, "_"); ok {
		fork := r
		if dot := strings.IndexByte(r, '.'); dot >= 0 {
			fork = r[:dot]
		}
		if fork != "fsm" && fork != "vm" && fork != "init" {
			return RelationFile{}, false
		}
		f.Fork = fork
		rest = r[len(fork):]
	}
	if rest == "" {
		return f, true
	}
	seg, ok := strings.CutPrefix(rest, ".")
	if !ok || seg == "" || len(seg) > 10 || !AllDigits(seg) {
		return RelationFile{}, false
	}
	var n uint64
	for _, c := range seg {
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<32-1 {
		return RelationFile{}, false
	}
	f.Segment = uint32(n)
	return f, true
}

// AllDigits reports whether s is a non-empty run of ASCII digits: the
// shape of the OIDs, relfilenumbers and segment numbers in the names of a
// data directory.
func AllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
