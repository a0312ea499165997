package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// target is what is known about the store an error came from; every field
// may be empty (package-level Classify knows nothing).
type target struct {
	scheme   string
	bucket   string
	endpoint string
}

// Classify turns a storage driver error into a one-line *failure.Error whose
// message starts with what (the operation, e.g. "list backups"):
//   - bucket or container missing: Precondition, hint to create it;
//   - access denied, bad or missing credentials: Precondition, hint naming
//     the credential variables to check;
//   - server certificate from an unknown CA: Precondition, hint
//     AWS_CA_BUNDLE=/path/ca.crt (SSL_CERT_FILE for gs and azblob);
//   - connection refused, no such host: Precondition "cannot reach <endpoint>";
//   - object missing: Precondition;
//   - context cancelled: Interrupted;
//   - anything else: Failed.
//
// An error that is already a *failure.Error is returned unchanged. The
// original error stays in the chain (errors.Is / errors.As still work).
// Store.Classify does the same knowing the bucket and endpoint.
func Classify(err error, what string) error {
	return classify(err, what, target{})
}

// Classify is the package Classify with this store's scheme, bucket and
// endpoint in messages and hints.
func (s *Store) Classify(err error, what string) error {
	return classify(err, what, target{scheme: s.Scheme, bucket: s.bucketName, endpoint: s.endpoint})
}

// lineError shows one line but keeps the driver error for errors.Is/As.
type lineError struct {
	msg   string
	cause error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.cause }

func classify(err error, what string, tg target) error {
	if err == nil {
		return nil
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return err
	}
	mk := func(kind failure.Kind, hint, format string, args ...any) error {
		msg := what + ": " + fmt.Sprintf(format, args...)
		return &failure.Error{Kind: kind, Err: &lineError{msg: msg, cause: err}, Hint: hint}
	}
	scheme := tg.scheme
	if scheme == "" {
		scheme = schemeOf(err)
	}
	bucket := "the bucket"
	if tg.bucket != "" {
		bucket = fmt.Sprintf("bucket %q", tg.bucket)
	}
	if scheme == "azblob" && tg.bucket != "" {
		bucket = fmt.Sprintf("container %q", tg.bucket)
	}
	where := tg.endpoint
	if where == "" {
		where = endpointOf(err)
	}

	if errors.Is(err, context.Canceled) {
		return mk(failure.Interrupted, "", "cancelled")
	}

	// TLS: the most common local mistake with MinIO and private CAs.
	if isUnknownAuthority(err) {
		hint := "set SSL_CERT_FILE=/path/ca.crt to the CA that signed the server certificate"
		if scheme == "s3" || scheme == "" {
			hint = "set AWS_CA_BUNDLE=/path/ca.crt to the CA that signed the server certificate"
		}
		return mk(failure.Precondition, hint, "TLS certificate of %s is signed by an unknown authority", orServer(where))
	}
	var hostErr x509.HostnameError
	if errors.As(err, &hostErr) {
		return mk(failure.Precondition, "use a host name the certificate names in the endpoint",
			"TLS certificate of %s is not valid for that name", orServer(where))
	}
	var invalidCert x509.CertificateInvalidError
	if errors.As(err, &invalidCert) {
		return mk(failure.Precondition, "renew the server certificate or check the clock",
			"TLS certificate of %s is invalid: %s", orServer(where), invalidCert.Error())
	}

	// A directory bucket we may not write (or on a read-only mount).
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return mk(failure.Precondition, "run as a user who may write the bucket directory, or correct the URL",
			"access to %s denied (%s)", orDir(tg.bucket), short(err))
	}

	code, status := serviceCode(err)
	switch {
	case code == "NoSuchBucket" || code == "ContainerNotFound" || errors.Is(err, storage.ErrBucketNotExist) ||
		(scheme == "gs" && status == http.StatusNotFound && strings.Contains(strings.ToLower(err.Error()), "bucket")):
		return mk(failure.Precondition, "create it, or correct the bucket URL", "%s does not exist", bucket)
	case isAccessDenied(code, status):
		return mk(failure.Precondition, credentialHint(scheme), "access to %s denied (%s)", bucket, codeOr(code, status))
	case isMissingCredentials(err):
		return mk(failure.Precondition, credentialHint(scheme), "no usable credentials: %s", short(err))
	}

	if unreachable(err) {
		return mk(failure.Precondition, "check the endpoint in the bucket URL and that the service is running and reachable",
			"cannot reach %s (%s)", orServer(where), netReason(err))
	}

	if errors.Is(err, context.DeadlineExceeded) {
		return mk(failure.Failed, "", "timed out (%s)", short(err))
	}
	if code == "NoSuchKey" || code == "BlobNotFound" || errors.Is(err, storage.ErrObjectNotExist) ||
		gcerrors.Code(err) == gcerrors.NotFound {
		return mk(failure.Precondition, "", "not found (%s)", short(err))
	}
	if msg := describeS3Error(err); msg != "" {
		return mk(failure.Failed, "", "%s", msg)
	}
	return mk(failure.Failed, "", "%s", short(err))
}

// describeS3Error renders an S3 service error without the SDK's noise
// (upload ids, request ids, nested "operation error" text): which call
// failed, after how many attempts, and what the service said.
func describeS3Error(err error) string {
	var oe *smithy.OperationError
	if !errors.As(err, &oe) {
		return ""
	}
	msg := "S3 " + oe.Operation() + " failed"
	var me *retry.MaxAttemptsError
	if errors.As(err, &me) {
		msg += fmt.Sprintf(" after %d attempts", me.Attempt)
	}
	code, status := serviceCode(err)
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae) && status != 0:
		msg += fmt.Sprintf(": HTTP %d %s: %s", status, ae.ErrorCode(), ae.ErrorMessage())
	case status != 0:
		msg += fmt.Sprintf(": HTTP %d %s", status, code)
	default:
		// No answer: say what happened to the connection, not the URL
		// with its upload id.
		var ue *url.Error
		if errors.As(err, &ue) {
			msg += ": request failed: " + firstLine(ue.Err.Error())
		} else {
			msg += ": " + firstLine(oe.Err.Error())
		}
	}
	return strings.TrimRight(msg, ": ")
}

// isUnknownAuthority: the server certificate is signed by a CA we do not
// trust.
func isUnknownAuthority(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	return errors.As(err, &unknownCA) || strings.Contains(err.Error(), "certificate signed by unknown authority")
}

// isCertificateError: any verification failure of the server certificate.
func isCertificateError(err error) bool {
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	return isUnknownAuthority(err) || errors.As(err, &hostErr) || errors.As(err, &invalidCert) || errors.As(err, &verifyErr)
}

func orDir(dir string) string {
	if dir == "" {
		return "the bucket directory"
	}
	return "directory " + dir
}

func orServer(endpoint string) string {
	if endpoint == "" {
		return "the storage service"
	}
	return endpoint
}

// serviceCode returns the error code and HTTP status a service answered
// with, for S3 (smithy), Azure (azcore) and GCS (googleapi).
func serviceCode(err error) (code string, status int) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ze *azcore.ResponseError
	if errors.As(err, &ze) {
		code, status = ze.ErrorCode, ze.StatusCode
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		status = ge.Code
		if len(ge.Errors) > 0 && code == "" {
			code = ge.Errors[0].Reason
		}
	}
	return code, status
}

func codeOr(code string, status int) string {
	if code != "" {
		return code
	}
	return fmt.Sprintf("HTTP %d", status)
}

func isAccessDenied(code string, status int) bool {
	switch code {
	case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
		"InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled",
		"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
		"InsufficientAccountPermissions", "InvalidAuthenticationInfo":
		return true
	}
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

func isMissingCredentials(err error) bool {
	var azAuth *azidentity.AuthenticationFailedError
	if errors.As(err, &azAuth) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{
		"failed to refresh cached credentials", "failed to retrieve credentials",
		"no EC2 IMDS role found", "static credentials are empty",
		"DefaultAzureCredential", "could not find default credentials",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func credentialHint(scheme string) string {
	switch scheme {
	case "gs":
		return "check GOOGLE_APPLICATION_CREDENTIALS (or the attached service account) and its roles on the bucket"
	case "azblob":
		return "check AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY (or AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING) and the account's rights on the container"
	default:
		return "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or the instance role) and the bucket policy"
	}
}

// unreachable reports network errors that mean the service was not reached
// at all: refused, no route, unknown host, dial timeout.
func unreachable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

func netReason(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dnsErr):
		return "no such host " + dnsErr.Name
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return short(err)
}

// endpointOf digs the server's scheme://host out of a network error.
func endpointOf(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Addr != nil {
		return opErr.Addr.String()
	}
	return ""
}

// schemeOf guesses the backend from the error's type.
func schemeOf(err error) string {
	var ae smithy.APIError
	var ze *azcore.ResponseError
	var ge *googleapi.Error
	switch {
	case errors.As(err, &ae):
		return "s3"
	case errors.As(err, &ze):
		return "azblob"
	case errors.As(err, &ge):
		return "gs"
	}
	return ""
}

// short is a driver error on one line. Azure's ResponseError prints the
// whole HTTP exchange; keep its status and code only.
func short(err error) string {
	var ze *azcore.ResponseError
	if errors.As(err, &ze) {
		return fmt.Sprintf("HTTP %d %s", ze.StatusCode, ze.ErrorCode)
	}
	return firstLine(err.Error())
}

// gcerrPrefix is what gocloud puts before a driver's message.
var gcerrPrefix = regexp.MustCompile(`^blob (\(key "[^"]*"\) )?\(code=\w+\): `)

// firstLine is s up to its first newline, without gocloud's "blob
// (code=...)" prefix, at most 300 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = gcerrPrefix.ReplaceAllString(s, "")
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
