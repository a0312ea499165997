package storage

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// URLForms lists the bucket URLs Open accepts, for usage messages.
const URLForms = "s3://BUCKET[/PREFIX][?endpoint=https://HOST:PORT&region=R&use_path_style=true], " +
	"gs://BUCKET[/PREFIX], azblob://CONTAINER[/PREFIX], file:///DIR, mem://"

// bucketURL is a parsed bucket URL: where the bucket is, our prefix inside
// it, and the driver parameters (still to be checked by the opener).
type bucketURL struct {
	scheme string
	bucket string // s3, gs, azblob: bucket or container; file: the directory
	prefix string // "" or ends in "/"
	query  url.Values
}

func usageErr(format string, args ...any) error {
	return &failure.Error{Kind: failure.Usage, Err: fmt.Errorf(format, args...),
		Hint: "bucket URLs look like " + URLForms}
}

// parseBucketURL splits raw into scheme, bucket, our prefix and parameters.
// The error never repeats the query string (it may hold a secret).
func parseBucketURL(raw string) (*bucketURL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, usageErr("no bucket URL given")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, usageErr("malformed bucket URL %q", Redact(raw))
	}
	b := &bucketURL{scheme: strings.ToLower(u.Scheme), query: u.Query()}
	if u.Opaque != "" {
		return nil, usageErr("malformed bucket URL %q: write %s://NAME", Redact(raw), b.scheme)
	}
	if u.User != nil {
		return nil, usageErr("bucket URL %q holds credentials: pass them through the environment instead", Redact(raw))
	}
	if u.Fragment != "" {
		return nil, usageErr("bucket URL %q has a #fragment", Redact(raw))
	}
	switch b.scheme {
	case "s3", "gs", "azblob":
		if u.Host == "" {
			return nil, usageErr("bucket URL %q names no bucket", Redact(raw))
		}
		b.bucket = u.Host
		if b.scheme == "s3" {
			if err := checkS3BucketName(b.bucket); err != nil {
				return nil, &failure.Error{Kind: failure.Usage, Err: fmt.Errorf("bucket URL %q: %v", Redact(raw), err),
					Hint: "S3 bucket names are 3 to 63 characters (a-z, 0-9, '.', '-') starting and ending with a letter or digit, as in s3://my-backups/prefix"}
			}
			if err := checkS3Accelerate(b.query); err != nil {
				return nil, err
			}
		}
		if b.prefix, err = cleanPrefix(u.Path); err != nil {
			return nil, usageErr("bucket URL %q: %v", Redact(raw), err)
		}
	case "file":
		// file:///abs/dir or file://localhost/abs/dir. A relative
		// directory (gocloud reads file://./rel/dir) would depend on where
		// the command runs, and would print as file://rel/dir, a form we
		// refuse: ask for the absolute path.
		switch u.Host {
		case "", "localhost":
			b.bucket = u.Path
		case ".", "..":
			return nil, &failure.Error{Kind: failure.Usage,
				Err:  fmt.Errorf("file URL %q names a relative directory", Redact(raw)),
				Hint: "give the absolute path: file:///absolute/dir (e.g. file://$PWD/" + strings.TrimPrefix(path.Clean(u.Host+u.Path), "./") + ")"}
		default:
			return nil, usageErr("file URL %q has a host: write file:///absolute/dir", Redact(raw))
		}
		if !strings.HasPrefix(b.bucket, "/") {
			return nil, usageErr("file URL %q names a relative directory: write file:///absolute/dir", Redact(raw))
		}
		if b.bucket == "" || b.bucket == "/" {
			return nil, usageErr("file URL %q names no directory", Redact(raw))
		}
		b.bucket = path.Clean(b.bucket)
	case "mem":
		// In-process memblob (tests, demos). The host is just a label.
		b.bucket = u.Host
		if b.prefix, err = cleanPrefix(u.Path); err != nil {
			return nil, usageErr("bucket URL %q: %v", Redact(raw), err)
		}
	case "":
		return nil, usageErr("bucket URL %q has no scheme", Redact(raw))
	default:
		return nil, usageErr("unsupported bucket URL scheme %q", b.scheme)
	}
	return b, nil
}

// checkS3BucketName applies S3's bucket naming rules (those of every
// region today; MinIO's are the same), so that a mistyped name is a usage
// error before anything is sent rather than a raw InvalidBucketName.
func checkS3BucketName(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("S3 bucket name %q is %d characters long, not 3 to 63", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("S3 bucket name %q has the character %q", name, c)
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return fmt.Errorf("S3 bucket name %q must start and end with a letter or digit", name)
	}
	if strings.Contains(name, "..") || strings.Contains(name, ".-") || strings.Contains(name, "-.") {
		return fmt.Errorf("S3 bucket name %q has adjacent '.'/'-' characters", name)
	}
	if ip := net.ParseIP(name); ip != nil {
		return fmt.Errorf("S3 bucket name %q looks like an IP address", name)
	}
	return nil
}

// checkS3Accelerate refuses what the SDK's endpoint rules refuse only at
// the first request ("endpoint rule error", exit 1): transfer acceleration
// has its own virtual-hosted endpoint, so it cannot be combined with
// path-style addressing or a FIPS endpoint. A value that is not a boolean is
// left to openS3, which names it.
func checkS3Accelerate(q url.Values) error {
	on := func(k string) bool {
		v, err := strconv.ParseBool(q.Get(k))
		return err == nil && v
	}
	if !on("accelerate") {
		return nil
	}
	for _, k := range []string{"use_path_style", "s3ForcePathStyle", "fips"} {
		if on(k) {
			return usageErr("s3 bucket URL parameters accelerate=true and %s=true cannot be combined: transfer acceleration has its own endpoint; drop one of them", k)
		}
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// cleanPrefix turns a URL path into our key prefix: "" or "a/b/". Empty,
// "." and ".." segments are refused: object stores would keep them
// literally and s3blob escapes "../", so the layout would not be what the
// user typed.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("prefix %q has an empty, \".\" or \"..\" segment", p)
		}
	}
	return p + "/", nil
}

// safeParams are URL parameters whose values are never secret and may be
// printed as they are.
var safeParams = map[string]bool{
	// s3
	"endpoint": true, "region": true, "use_path_style": true, "s3ForcePathStyle": true,
	"disable_https": true, "dualstack": true, "fips": true, "accelerate": true,
	"hostname_immutable": true, "rate_limiter_capacity": true, "anonymous": true,
	"request_checksum_calculation": true, "response_checksum_validation": true,
	"ssetype": true, "profile": true, "awssdk": true,
	// azblob
	"domain": true, "protocol": true, "localemu": true, "cdn": true, "storage_account": true,
	// file
	"no_tmp_dir": true, "metadata": true, "create_dir": true, "dir_file_mode": true,
}

// Redact returns raw with every secret-looking part removed, safe to print:
// no user:password, and the value of any parameter not known to be harmless
// (a SAS signature, a key id, ...) replaced by REDACTED. A URL that does not
// parse is replaced as a whole.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.Fragment = ""
	u.RawFragment = ""
	u.RawQuery = redactQuery(u.Query())
	return u.String()
}

func redactQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		for _, v := range q[k] {
			if sb.Len() > 0 {
				sb.WriteByte('&')
			}
			switch {
			case !safeParams[k]:
				v = "REDACTED"
			case k == "endpoint":
				v = redactEndpoint(v)
			}
			sb.WriteString(url.QueryEscape(k))
			sb.WriteByte('=')
			// Keep "://" and ":" readable: these values are for people.
			sb.WriteString(strings.NewReplacer("%3A", ":", "%2F", "/").Replace(url.QueryEscape(v)))
		}
	}
	return sb.String()
}

// redactEndpoint drops user info and query from an endpoint URL.
func redactEndpoint(v string) string {
	e, err := url.Parse(v)
	if err != nil {
		return "REDACTED"
	}
	e.User = nil
	e.RawQuery = ""
	e.Fragment = ""
	return e.String()
}

// display is the printable form of a parsed URL.
func (b *bucketURL) display() string {
	var s string
	switch b.scheme {
	case "file":
		s = (&url.URL{Scheme: "file", Path: b.bucket}).String()
	default:
		s = b.scheme + "://" + b.bucket + "/" + b.prefix
		if b.prefix == "" {
			s = strings.TrimSuffix(s, "/")
		}
	}
	if q := redactQuery(b.query); q != "" {
		s += "?" + q
	}
	return s
}

// checkParams refuses parameters outside allowed, naming them (not their
// values).
func checkParams(scheme string, q url.Values, allowed ...string) error {
	var bad []string
	for k := range q {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	sort.Strings(allowed)
	return usageErr("unknown %s bucket URL parameter(s) %s (known: %s)",
		scheme, strings.Join(bad, ", "), strings.Join(allowed, ", "))
}
