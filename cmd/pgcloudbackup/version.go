package main

import (
	"runtime/debug"
)

// toolVersion is the version reported by --version and recorded in every
// manifest: the one stamped by the Makefile or goreleaser (-X main.version),
// else the module version `go install …@vX.Y.Z` records in the binary, else
// the VCS revision of a plain `go build` in a checkout.
func toolVersion() string {
	if version != "" && version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFromBuildInfo(bi)
}

func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "dev-" + rev
	if modified == "true" {
		v += "-dirty"
	}
	return v
}
