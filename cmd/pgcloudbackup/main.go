// Command pgcloudbackup takes physical base backups of a running PostgreSQL
// cluster straight into object storage and restores them.
package main

import (
	"os"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(runWith(os.Args[1:], os.Stdout, os.Stderr, routeLibraryLogs))
}
