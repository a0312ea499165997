package storage

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/googleapis/gax-go/v2"
	"gocloud.dev/blob"
)

// Every backend gets the same bounded retry policy (Options.Retry) and logs
// each retry at Warn with the operation, the attempt that failed and its
// error: S3 through the SDK retryer (s3.go), GCS and Azure here.

func (r Retry) attempts() int {
	if r.MaxAttempts <= 0 {
		return defaultMaxAttempts
	}
	return r.MaxAttempts
}

func (r Retry) maxBackoff() time.Duration {
	if r.MaxBackoff <= 0 {
		return defaultMaxBackoff
	}
	return r.MaxBackoff
}

// firstBackoff is the first wait: about a second, as the SDKs do, unless the
// cap is lower.
func (r Retry) firstBackoff() time.Duration {
	return min(time.Second, r.maxBackoff())
}

func logRetry(ctx context.Context, log *slog.Logger, operation string, attempt, max int, err error) {
	log.WarnContext(ctx, "storage request failed, retrying",
		"operation", operation, "attempt", attempt, "max_attempts", max, "error", firstLine(err.Error()))
}

// setGCSRetry replaces the storage client's default policy, which retries
// transient errors (connection refused included) until the context ends,
// by the bounded one.
func setGCSRetry(b *blob.Bucket, r Retry, log *slog.Logger) {
	var c *storage.Client
	if !b.As(&c) {
		return
	}
	max := r.attempts()
	c.SetRetry(
		// Every call we make is safe to repeat: each key is written once
		// per run with fixed content, and a delete that finds the object
		// already gone is a success. Without it the client retries no
		// DELETE, so a failed backup's cleanup gave up on the first
		// transient error and left its objects behind.
		storage.WithPolicy(storage.RetryAlways),
		storage.WithMaxAttempts(max),
		storage.WithBackoff(gax.Backoff{Initial: r.firstBackoff(), Max: r.maxBackoff(), Multiplier: 2}),
		storage.WithErrorFuncWithContext(func(err error, rc *storage.RetryContext) bool {
			retry := storage.ShouldRetry(err)
			if retry && rc != nil && rc.Attempt < max {
				logRetry(context.Background(), log, rc.Operation, rc.Attempt, max, err)
			}
			return retry
		}),
	)
}

// azureRetryOptions is the bounded policy for azcore clients, with two
// pipeline policies that count and log attempts.
func azureRetryOptions(r Retry, log *slog.Logger) (policy.RetryOptions, []policy.Policy, []policy.Policy) {
	max := r.attempts()
	ro := policy.RetryOptions{
		MaxRetries:    int32(max - 1),
		RetryDelay:    min(800*time.Millisecond, r.maxBackoff()),
		MaxRetryDelay: r.maxBackoff(),
	}
	return ro, []policy.Policy{azAttemptCounter{}}, []policy.Policy{azRetryLogger{log: log, max: max}}
}

type azAttemptsKey struct{}

// azAttemptCounter runs once per call, before the retry policy: it gives
// the call a fresh counter.
type azAttemptCounter struct{}

func (azAttemptCounter) Do(req *policy.Request) (*http.Response, error) {
	ctx := context.WithValue(req.Raw().Context(), azAttemptsKey{}, new(atomic.Int32))
	return req.WithContext(ctx).Next()
}

// azRetryLogger runs once per attempt, inside the retry policy. It logs an
// attempt that failed in a way azcore retries, unless it was the last.
type azRetryLogger struct {
	log *slog.Logger
	max int
}

func (p azRetryLogger) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	ctx := req.Raw().Context()
	n, ok := ctx.Value(azAttemptsKey{}).(*atomic.Int32)
	if !ok {
		return resp, err
	}
	attempt := int(n.Add(1))
	if attempt >= p.max || ctx.Err() != nil {
		return resp, err
	}
	cause := err
	if cause == nil && resp != nil {
		switch resp.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			cause = errors.New(resp.Status)
		}
	}
	if cause != nil {
		// The path only: the query may hold a SAS token.
		logRetry(ctx, p.log, req.Raw().Method+" "+req.Raw().URL.Path, attempt, p.max, cause)
	}
	return resp, err
}
