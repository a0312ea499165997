package storage

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// TestDescribeS3Error: a failed part upload reads as one short line —
// the call, the attempts, the service's answer — without upload or
// request ids.
func TestDescribeS3Error(t *testing.T) {
	api := &smithy.GenericAPIError{Code: "InternalError", Message: "We encountered an internal error, please try again."}
	resp := &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 500}}, Err: api},
		RequestID:     "17B2D3F1A2B3C4D5",
	}
	err := &smithy.OperationError{ServiceID: "S3", OperationName: "UploadPart",
		Err: &retry.MaxAttemptsError{Attempt: 5, Err: resp}}
	wrapped := errors.Join(errors.New("upload multipart failed, upload id: ZmFrZS11cGxvYWQtaWQ"), err)
	got := Classify(wrapped, "upload backups/x/base.00001.tar.zst").Error()
	want := "upload backups/x/base.00001.tar.zst: S3 UploadPart failed after 5 attempts: HTTP 500 InternalError: We encountered an internal error, please try again."
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if strings.Contains(got, "ZmFrZS11cGxvYWQtaWQ") || strings.Contains(got, "17B2D3F1A2B3C4D5") {
		t.Errorf("ids leaked into the message: %q", got)
	}
}

func TestDescribeS3ErrorNoAnswer(t *testing.T) {
	put := &url.Error{Op: "Put", URL: "http://127.0.0.1:1/b/k?partNumber=3&uploadId=ZmFrZS11cGxvYWQtaWQ", Err: io.ErrUnexpectedEOF}
	err := &smithy.OperationError{ServiceID: "S3", OperationName: "UploadPart",
		Err: &retry.MaxAttemptsError{Attempt: 5, Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{}}, Err: put}}}}
	got := Classify(err, "upload k").Error()
	if want := "upload k: S3 UploadPart failed after 5 attempts: request failed: unexpected EOF"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
