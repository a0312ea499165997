package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestForeignLogLines: what the AWS SDK logs while finding credentials (its
// instance-metadata client "falling back to IMDSv1" when the token request
// is refused) and what the Azure SDK logs come out in our log format (the
// standard log package's lines, which no request here can make the SDKs
// print since such URLs are refused first, are cmd's TestStdLogRouted), never as a foreign plain-text line. One local
// server plays the instance metadata service (it refuses IMDSv2 tokens and
// hands out a role's credentials over IMDSv1) and S3 (every request denied).
func TestForeignLogLines(t *testing.T) {
	var tokenRequests, credRequests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			tokenRequests.Add(1)
			http.Error(w, "IMDSv2 refused", http.StatusForbidden)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			credRequests.Add(1)
			fmt.Fprint(w, "testrole")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/testrole":
			now := time.Now().UTC()
			fmt.Fprintf(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIDFOREIGNLOG","SecretAccessKey":"secret","Token":"token","LastUpdated":%q,"Expiration":%q}`,
				now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
		default: // S3
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
		}
	}))
	defer srv.Close()
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + srv.URL,
	}
	bucket := "s3://foreignlog?region=us-east-1&use_path_style=true&endpoint=" + srv.URL
	textLine := regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=`)

	// The Azure SDK prints its own request log on stderr when
	// AZURE_SDK_GO_LOGGING=all.
	azBucket := "azblob://foreignlog?protocol=http&localemu=true&domain=" + strings.TrimPrefix(srv.URL, "http://")
	azEnv := []string{"AZURE_SDK_GO_LOGGING=all", "AZURE_STORAGE_ACCOUNT=devstoreaccount1",
		"AZURE_STORAGE_KEY=" + base64.StdEncoding.EncodeToString([]byte("not-a-real-key"))}

	for _, tc := range []struct {
		name, bucket, want string
		env                []string
	}{
		{"imds", bucket, "falling back to IMDSv1", nil},
		{"azure", azBucket, "OUTGOING REQUEST", azEnv},
	} {
		env := append(append([]string{}, env...), tc.env...)
		t.Run(tc.name+"/json", func(t *testing.T) {
			tokenRequests.Store(0)
			credRequests.Store(0)
			r := cli(t, env, "list", "--bucket", tc.bucket, "-v", "--log-format", "json")
			if r.code == 0 {
				t.Fatalf("list against a bucket that denies everything succeeded:\n%s", r)
			}
			if tc.name == "imds" && (tokenRequests.Load() == 0 || credRequests.Load() == 0) {
				t.Fatalf("the credential chain did not reach the metadata server (%d token, %d credential requests):\n%s",
					tokenRequests.Load(), credRequests.Load(), r)
			}
			found := false
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if strings.HasPrefix(l, "pgcloudbackup: error:") {
					continue // the final error line, as in every run
				}
				var v map[string]any
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Errorf("--log-format json wrote a line that is not JSON: %q", l)
					continue
				}
				if msg, _ := v["msg"].(string); strings.Contains(msg, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no JSON log line says %q:\n%s", tc.want, r)
			}
		})
		t.Run(tc.name+"/text", func(t *testing.T) {
			r := cli(t, env, "list", "--bucket", tc.bucket, "-v")
			if r.code == 0 {
				t.Fatalf("list against a bucket that denies everything succeeded:\n%s", r)
			}
			found := false
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if strings.HasPrefix(l, "pgcloudbackup: error:") {
					continue
				}
				if !textLine.MatchString(l) {
					t.Errorf("text log line not in our format: %q", l)
				}
				if strings.Contains(l, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no log line says %q:\n%s", tc.want, r)
			}
		})
	}
}
