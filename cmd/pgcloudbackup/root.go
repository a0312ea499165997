package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	bucket    string
	json      bool
	logFormat string
	verbose   bool
	quiet     bool
	// config is --config; configUsed the file actually read ("" if none).
	config     string
	configUsed string

	stdout io.Writer
	stderr io.Writer
	logger *slog.Logger
	// hardStop is cancelled on a second signal: uploads are cut (the
	// first signal only stops the work and aborts uploads cleanly).
	hardStop context.Context
	// libraryLogs, when set (by main), gets the logger once it is built.
	libraryLogs func(*slog.Logger)
	// term is stderr when it is a terminal, shared by the log and the
	// progress bar (nil otherwise).
	term *progress.Term
}

func run(args []string, stdout, stderr io.Writer) int {
	return runWith(args, stdout, stderr, nil)
}

// runWith is run; libraryLogs (main's routeLibraryLogs) gets the logger
// once the flags are parsed.
func runWith(args []string, stdout, stderr io.Writer, libraryLogs func(*slog.Logger)) int {
	out := &countingWriter{w: stdout}
	g := &globalOptions{stdout: out, stderr: stderr, libraryLogs: libraryLogs}
	ctx, hardStop, stopSignals := signalContexts()
	defer stopSignals()
	g.hardStop = hardStop
	defer startMemProfile(stderr)()

	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	started := false
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		started = true
		used, err := applyConfig(cmd)
		if err != nil {
			return err
		}
		g.configUsed = used
		return g.setup()
	}
	err := root.ExecuteContext(ctx)
	if err != nil && !started {
		// cobra's own errors: unknown command, wrong arguments, bad flags.
		err = failure.Wrap(failure.Usage, err, "see 'pgcloudbackup --help'")
	}
	err = interruptedIfStopped(ctx, err)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) && !errors.Is(err, errInterrupted) {
		// "context canceled" (restore, verify) tells the user nothing:
		// the signal stopped the command.
		err = errInterrupted
	}
	code := exitCodeFor(err)
	if sub, _, ferr := root.Find(args); ferr == nil && sub.Name() == "wal-fetch" {
		code = walFetchExitCode(err, code)
		if code == exitWALAbsent {
			return code // quiet: recovery asks for files past the archive's end
		}
	}
	if err != nil && code != exitChecksumFailures {
		printError(stderr, err)
		// Scripts get the error as JSON too, unless the command already
		// printed its own JSON result (verify's report, for one).
		if g.json && out.n == 0 {
			writeJSON(stdout, map[string]any{
				"status":    "error",
				"error":     errorLine(err),
				"kind":      failure.KindOf(err).String(),
				"exit_code": code,
			})
		}
	}
	return code
}

// countingWriter counts what a command wrote to stdout.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// signalContexts returns a context cancelled by the first SIGINT/SIGTERM
// (graceful stop) and one cancelled by the second (hard stop).
func signalContexts() (graceful, hard context.Context, stop func()) {
	graceful, cancelGraceful := context.WithCancelCause(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancelGraceful(errInterrupted)
		case <-done:
			return
		}
		select {
		case <-ch:
			cancelHard()
		case <-done:
		}
	}()
	return graceful, hard, func() {
		signal.Stop(ch)
		close(done)
		cancelGraceful(nil)
		cancelHard()
	}
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "pgcloudbackup",
		Short: "Physical PostgreSQL base backups streamed into object storage",
		Long: `pgcloudbackup takes physical base backups of a running PostgreSQL cluster and
streams them into object storage (S3 and S3-compatibles, Google Cloud Storage,
Azure Blob, a local directory) with no local staging, and restores them.

Exit codes: 0 success, 1 failed, 2 usage error, 3 unmet precondition (server,
bucket, permissions, target), 4 backup complete but page checksum failures
found, 130 interrupted.`,
		Version:       toolVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return failure.Wrap(failure.Usage, err, "see --help")
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.bucket, "bucket", os.Getenv("PGCLOUDBACKUP_BUCKET"),
		"bucket URL: s3://bucket/prefix?endpoint=..., gs://..., azblob://..., file:///dir, mem:// (env PGCLOUDBACKUP_BUCKET)")
	pf.BoolVar(&g.json, "json", false, "machine-readable output on stdout")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "debug logging")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "log warnings and errors only")
	pf.StringVar(&g.config, "config", "", "configuration file of name = value lines, names being long flags (env PGCLOUDBACKUP_CONFIG; default "+defaultConfigPath+" if present)")
	root.AddCommand(newBackupCommand(g))
	root.AddCommand(newRestoreCommand(g))
	root.AddCommand(newVerifyCommand(g))
	root.AddCommand(newListCommand(g))
	root.AddCommand(newShowCommand(g))
	root.AddCommand(newDeleteCommand(g))
	root.AddCommand(newWALPushCommand(g))
	root.AddCommand(newWALFetchCommand(g))
	root.AddCommand(newCheckCommand(g))
	root.AddCommand(newWALPrefetchCommand(g))
	return root
}

// setup builds the logger once flags are parsed.
func (g *globalOptions) setup() error {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	} else if g.quiet {
		level = slog.LevelWarn
	}
	hopts := &slog.HandlerOptions{Level: level}
	logOut := g.logOutput()
	switch g.logFormat {
	case "text":
		g.logger = slog.New(slog.NewTextHandler(logOut, hopts))
	case "json":
		g.logger = slog.New(slog.NewJSONHandler(logOut, hopts))
	default:
		return usageError("--log-format must be text or json, not %q", g.logFormat)
	}
	if g.libraryLogs != nil {
		g.libraryLogs(g.logger)
	}
	return nil
}
