package main

import (
	"context"
	"log"
	"log/slog"
	"strings"

	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
)

// routeLibraryLogs sends what libraries log through process-wide loggers
// into ours, so that stderr carries only our lines (--log-format json
// stays parseable). It changes global state (the standard log package's
// output, the Azure SDK's listener), so only main calls it, once the
// logger exists; tests that call run in-process leave it alone.
//
//   - The standard log package: gocloud ("blob.Writer ... was never
//     closed"), the S3 transfer manager ("failed to complete multipart
//     upload"), the S3 client ("UseAccelerate ... ignoring"), the GCS client
//     (stalled reads) print with log.Printf. Their lines become warnings.
//   - The Azure SDK logs through its own listener (set from
//     AZURE_SDK_GO_LOGGING=all, plain text on stderr). With -v its lines
//     are our debug lines; otherwise they are dropped (no listener: the SDK
//     does not even format them).
func routeLibraryLogs(l *slog.Logger) {
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(stdLogWriter{l})
	if l.Enabled(context.Background(), slog.LevelDebug) {
		azlog.SetListener(func(ev azlog.Event, msg string) {
			l.Debug(msg, "source", "azure-sdk", "event", string(ev))
		})
	} else {
		azlog.SetListener(nil)
	}
}

// stdLogWriter turns each line the standard log package writes into a
// warning.
type stdLogWriter struct{ l *slog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimRight(string(p), "\n"), "source", "go-log")
	return len(p), nil
}
