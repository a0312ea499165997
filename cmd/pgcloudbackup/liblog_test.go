package main

import (
	"bytes"
	"encoding/json"
	"log"
	"log/slog"
	"strings"
	"testing"

	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
)

// TestStdLogRouted: a line a library prints with the standard log package
// (the S3 client's "UseAccelerate ... ignoring", gocloud's "blob.Writer ...
// was never closed") comes out as one of our warnings, in JSON and in text,
// never as a foreign plain-text line.
func TestStdLogRouted(t *testing.T) {
	flags, prefix, out := log.Flags(), log.Prefix(), log.Writer()
	t.Cleanup(func() {
		log.SetFlags(flags)
		log.SetPrefix(prefix)
		log.SetOutput(out)
		azlog.SetListener(nil)
	})
	const msg = "UseAccelerate is not compatible with UsePathStyle, ignoring UsePathStyle."

	var buf bytes.Buffer
	routeLibraryLogs(slog.New(slog.NewJSONHandler(&buf, nil)))
	log.Println(msg)
	var v map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &v); err != nil {
		t.Fatalf("standard log line is not one JSON line: %q: %v", buf.String(), err)
	}
	if v["msg"] != msg || v["level"] != "WARN" || v["source"] != "go-log" {
		t.Errorf("JSON line = %v, want msg %q, level WARN, source go-log", v, msg)
	}

	buf.Reset()
	routeLibraryLogs(slog.New(slog.NewTextHandler(&buf, nil)))
	log.Printf("%s\n", msg)
	line := strings.TrimSpace(buf.String())
	if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, "time=") || !strings.Contains(line, "level=WARN") ||
		!strings.Contains(line, `msg="`+msg+`"`) {
		t.Errorf("text line = %q, want one of our warnings saying %q", line, msg)
	}
}
