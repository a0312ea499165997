package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// The configuration file gives defaults for long flags, one "name = value"
// a line, so that archive_command and restore_command in postgresql.conf
// stay short. A flag on the command line wins, then an environment
// variable (PGCLOUDBACKUP_BUCKET), then the file. Credentials never belong
// in it: each storage SDK reads its own chain.
const (
	configEnv         = "PGCLOUDBACKUP_CONFIG"
	defaultConfigPath = "/etc/pgcloudbackup.conf"
)

// flagEnv names the environment variable that overrides the file for a
// flag.
var flagEnv = map[string]string{"bucket": "PGCLOUDBACKUP_BUCKET"}

// configPath is the file to read and whether the user named it (a named
// file must exist; the default one may be absent).
func configPath(cmd *cobra.Command) (string, bool) {
	if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
		return f.Value.String(), true
	}
	if p := os.Getenv(configEnv); p != "" {
		return p, true
	}
	return defaultConfigPath, false
}

// applyConfig reads the configuration file and sets every flag of cmd it
// names that the command line and the environment left alone. It returns
// the file read ("" when none).
func applyConfig(cmd *cobra.Command) (string, error) {
	path, explicit := configPath(cmd)
	settings, err := readConfig(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	for _, s := range settings {
		if s.key == "config" || !isFlag(cmd.Root(), s.key) {
			return "", failure.New(failure.Usage, "%s line %d: unknown setting %q (keys are long flag names, such as bucket)", path, s.line, s.key)
		}
		if s.key == "dsn" && strings.Contains(strings.ToLower(s.value), "password") {
			return "", failure.Wrap(failure.Usage, fmt.Errorf("%s line %d: the configuration file may not hold a password", path, s.line),
				"use PGPASSWORD or ~/.pgpass")
		}
		f := cmd.Flags().Lookup(s.key)
		if f == nil || f.Changed {
			continue // another command's setting, or given on the command line
		}
		if env := flagEnv[s.key]; env != "" && os.Getenv(env) != "" {
			continue
		}
		if err := cmd.Flags().Set(s.key, s.value); err != nil {
			return "", failure.New(failure.Usage, "%s line %d: %s: %v", path, s.line, s.key, err)
		}
	}
	return path, nil
}

type setting struct {
	line       int
	key, value string
}

// readConfig parses "name = value" lines; blank lines and lines starting
// with # are skipped; a value may be wrapped in single or double quotes.
func readConfig(path string) ([]setting, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, failure.Wrap(failure.Usage, fmt.Errorf("configuration file %s: %w", path, fs.ErrNotExist), "")
		}
		return nil, failure.Wrap(failure.Usage, fmt.Errorf("configuration file: %w", err), "")
	}
	defer f.Close()
	var out []setting
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, failure.New(failure.Usage, "%s line %d: want name = value", path, n)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if prev, dup := seen[k]; dup {
			return nil, failure.New(failure.Usage, "%s line %d: %s already set on line %d", path, n, k, prev)
		}
		seen[k] = n
		out = append(out, setting{line: n, key: k, value: v})
	}
	if err := sc.Err(); err != nil {
		return nil, failure.New(failure.Usage, "configuration file %s: %v", path, err)
	}
	return out, nil
}

// isFlag reports whether some command has a long flag called name.
func isFlag(c *cobra.Command, name string) bool {
	if c.Flags().Lookup(name) != nil || c.PersistentFlags().Lookup(name) != nil {
		return true
	}
	for _, sub := range c.Commands() {
		if isFlag(sub, name) {
			return true
		}
	}
	return false
}
