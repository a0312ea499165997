package storage

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// Retry bounds the retries of one storage request (S3: the SDK retryer we
// install; other backends keep their SDK's own policy).
type Retry struct {
	// MaxAttempts counts the first try (0: 5).
	MaxAttempts int
	// MaxBackoff caps one exponential, jittered wait (0: 20 s).
	MaxBackoff time.Duration
}

const (
	defaultMaxAttempts = 5
	defaultMaxBackoff  = 20 * time.Second
	// s3AbortTimeout bounds the AbortMultipartUpload the transfer manager
	// sends after a failed upload, on a fresh context so that it still
	// goes out when the upload's own context was cancelled.
	s3AbortTimeout = 30 * time.Second
	// s3SweepTimeout bounds the listing and aborts sweep runs after a
	// failed upload (S3 and Azure); a few retried requests fit in it.
	s3SweepTimeout = 2 * time.Minute
)

// s3Params are the URL parameters an s3:// URL may carry: the AWS config
// ones (gocloud.dev/aws V2ConfigFromURLParams) and the S3 ones s3blob's URL
// opener reads.
var s3Params = []string{
	"region", "endpoint", "profile", "role", "anonymous", "hostname_immutable",
	"dualstack", "fips", "rate_limiter_capacity",
	"request_checksum_calculation", "response_checksum_validation", "awssdk",
	"ssetype", "kmskeyid", "accelerate", "use_path_style", "s3ForcePathStyle", "disable_https",
}

// s3Bucket is what openS3 returns besides the bucket: what Store needs to
// tune uploads and name the endpoint in errors.
type s3Bucket struct {
	client   *s3.Client
	checksum aws.RequestChecksumCalculation
	endpoint string
	// What s3blob adds to every upload (ssetype, kmskeyid), for the pooled
	// upload path (uploadS3Pooled).
	sse      types.ServerSideEncryption
	kmsKeyID *string
}

// openS3 builds the S3 client itself (rather than through s3blob's URL
// opener) so that it controls retries: a bounded exponential backoff that
// logs every retry. It applies the same URL parameters the opener would.
// Credentials stay in the SDK's standard chain (environment, shared config,
// web identity, instance or task role).
func openS3(ctx context.Context, bu *bucketURL, opts Options, log *slog.Logger) (*blob.Bucket, *s3Bucket, error) {
	if err := checkParams("s3", bu.query, s3Params...); err != nil {
		return nil, nil, err
	}
	q := url.Values{}
	for k, v := range bu.query {
		if len(v) != 1 {
			return nil, nil, usageErr("s3 bucket URL parameter %s is given %d times", k, len(v))
		}
		q[k] = v
	}
	take := func(k string) string {
		v := q.Get(k)
		q.Del(k)
		return v
	}
	parseBool := func(k, v string) (bool, error) {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, usageErr("s3 bucket URL parameter %s=%q is not true or false", k, v)
		}
		return b, nil
	}

	var bopts s3blob.Options
	var clientOpts []func(*s3.Options)
	if v := take("ssetype"); v != "" {
		ok := false
		for _, t := range types.ServerSideEncryptionAes256.Values() {
			if strings.EqualFold(string(t), v) {
				bopts.EncryptionType, ok = t, true
			}
		}
		if !ok {
			return nil, nil, usageErr("s3 bucket URL parameter ssetype=%q: want one of %v", v, types.ServerSideEncryptionAes256.Values())
		}
	}
	bopts.KMSEncryptionID = take("kmskeyid")
	if v := take("accelerate"); v != "" {
		b, err := parseBool("accelerate", v)
		if err != nil {
			return nil, nil, err
		}
		clientOpts = append(clientOpts, func(o *s3.Options) { o.UseAccelerate = b })
	}
	if v := take("disable_https"); v != "" {
		b, err := parseBool("disable_https", v)
		if err != nil {
			return nil, nil, err
		}
		clientOpts = append(clientOpts, func(o *s3.Options) { o.EndpointOptions.DisableHTTPS = b })
	}
	for _, k := range []string{"use_path_style", "s3ForcePathStyle"} {
		if v := take(k); v != "" {
			b, err := parseBool(k, v)
			if err != nil {
				return nil, nil, err
			}
			clientOpts = append(clientOpts, func(o *s3.Options) { o.UsePathStyle = b })
		}
	}
	limiter := retry.RateLimiter(ratelimit.None) // as gocloud: no client-side retry quota by default
	if v := take("rate_limiter_capacity"); v != "" {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil || n == 0 {
			return nil, nil, usageErr("s3 bucket URL parameter rate_limiter_capacity=%q is not a positive integer", v)
		}
		limiter = ratelimit.NewTokenRateLimit(uint(n))
	}
	endpoint := q.Get("endpoint")
	if endpoint != "" {
		e, err := url.Parse(endpoint)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return nil, nil, usageErr("s3 endpoint %q must be a URL with its scheme, like https://HOST:PORT", redactEndpoint(endpoint))
		}
	}

	maxAttempts, maxBackoff := opts.Retry.MaxAttempts, opts.Retry.MaxBackoff
	if maxAttempts <= 0 {
		maxAttempts = defaultMaxAttempts
	}
	if maxBackoff <= 0 {
		maxBackoff = defaultMaxBackoff
	}
	// The credential chain's clients (instance metadata, STS) get the
	// retryer gocloud gave them; S3 gets ours, set after loading.
	chainRetryer := config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.RateLimiter = limiter })
	})
	retryer := func() aws.Retryer {
		std := retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.MaxBackoff = maxBackoff
			o.RateLimiter = limiter
		})
		return &loggingRetryer{RetryerV2: std, log: log}
	}
	// The SDK's default logger prints to stderr, which carries only our log
	// lines; it must be given at load time, or the credential chain's
	// clients (instance metadata: "falling back to IMDSv1") keep the
	// default. Reading any multipart object logs "Skipped validation of
	// multipart checksum" (its composite checksum cannot be checked against
	// the body); single-part objects still are validated, so validation
	// stays on (response_checksum_validation=when_supported) and the SDK's
	// lines go to our logger at Debug.
	cfg, err := loadAWSConfig(ctx, q, config.WithLogger(sdkLogger{log}), chainRetryer)
	if err != nil {
		if failure.KindOf(err) == failure.Usage {
			return nil, nil, err
		}
		return nil, nil, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("load AWS configuration: %s", firstLine(err.Error())),
			Hint: "check AWS_PROFILE, AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE"}
	}
	if cfg.Region == "" {
		return nil, nil, &failure.Error{Kind: failure.Usage,
			Err:  fmt.Errorf("no AWS region for bucket %s", bu.bucket),
			Hint: "add region=REGION to the bucket URL or set AWS_REGION (MinIO: us-east-1)"}
	}
	cfg.Retryer = retryer
	clientOpts = append(clientOpts, func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, addAttemptCounter)
	})
	client := s3.NewFromConfig(cfg, clientOpts...)
	bopts.RequestChecksumCalculation = cfg.RequestChecksumCalculation
	b, err := s3blob.OpenBucketV2(ctx, client, bu.bucket, &bopts)
	if err != nil {
		return nil, nil, usageErr("s3 bucket %q: %v", bu.bucket, err)
	}
	if endpoint == "" {
		endpoint = "https://s3." + cfg.Region + ".amazonaws.com"
	}
	sb := &s3Bucket{client: client, checksum: cfg.RequestChecksumCalculation, endpoint: redactEndpoint(endpoint),
		sse: bopts.EncryptionType}
	if bopts.KMSEncryptionID != "" {
		sb.kmsKeyID = aws.String(bopts.KMSEncryptionID)
	}
	return b, sb, nil
}

// sdkLogger is the AWS SDK's logger over ours: every SDK line, whatever
// its classification, at Debug.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "source", "aws-sdk", "sdk_level", string(c))
}

// attemptsKey holds an operation's attempt counter in its context.
type attemptsKey struct{}

// addAttemptCounter puts a fresh counter in the context of every operation,
// outside the SDK's retry loop, for loggingRetryer to count attempts in.
func addAttemptCounter(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("pgcloudbackupAttempts",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			return next.HandleFinalize(context.WithValue(ctx, attemptsKey{}, new(atomic.Int32)), in)
		}), "Retry", middleware.Before)
}

// loggingRetryer is the SDK's standard retryer that logs each retry: the
// operation, which attempt failed and why. GetAttemptToken runs once per
// attempt; GetRetryToken only when a failed attempt is going to be retried.
type loggingRetryer struct {
	aws.RetryerV2
	log *slog.Logger
}

func (r *loggingRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
	return r.RetryerV2.GetAttemptToken(ctx)
}

// IsErrorRetryable refuses to retry certificate errors: a server
// certificate the client does not trust will not become trusted in a few
// seconds, and the user should get the hint (AWS_CA_BUNDLE) at once.
func (r *loggingRetryer) IsErrorRetryable(err error) bool {
	if isCertificateError(err) {
		return false
	}
	return r.RetryerV2.IsErrorRetryable(err)
}

func (r *loggingRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	attempt := int32(0)
	if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
		attempt = n.Load()
	}
	r.log.WarnContext(ctx, "storage request failed, retrying",
		"operation", awsmiddleware.GetOperationName(ctx),
		"attempt", attempt,
		"max_attempts", r.MaxAttempts(),
		"error", firstLine(opErr.Error()))
	return r.RetryerV2.GetRetryToken(ctx, opErr)
}

// tuneS3Upload returns a BeforeWrite hook that replaces the transfer manager
// s3blob made for one upload by one with two changes:
//   - FailTimeout: the AbortMultipartUpload after a failure runs on a fresh
//     context, so cancelling the upload's context no longer leaves the parts
//     behind (with the default, the abort is sent on the dead context);
//   - MultipartUploadThreshold = part size: a stream longer than one part
//     becomes a multipart upload at once, instead of being buffered up to
//     16 MiB first (the default threshold), so memory stays at the parts.
//
// Everything else is what s3blob sets (part size, concurrency, checksum
// mode). s3blob hands out the *transfermanager.Client pointer it will use,
// so the hook overwrites the value it points to.
func tuneS3Upload(sb *s3Bucket, partSize, concurrency int, next func(func(any) bool) error) func(func(any) bool) error {
	return func(as func(any) bool) error {
		var tm *transfermanager.Client
		if as(&tm) && tm != nil {
			ps := int64(partSize)
			if ps <= 0 {
				ps = DefaultPartSize // one rule for every path (PartSize)
			}
			*tm = *transfermanager.New(sb.client, func(o *transfermanager.Options) {
				o.RequestChecksumCalculation = sb.checksum
				o.PartSizeBytes = ps
				o.MultipartUploadThreshold = ps
				if concurrency > 0 {
					o.Concurrency = concurrency
				}
				o.FailTimeout = s3AbortTimeout
			})
		}
		if next != nil {
			return next(as)
		}
		return nil
	}
}
