package storage

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcp"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// Options shape how a bucket is opened.
type Options struct {
	// Logger receives storage warnings such as retried requests
	// (nil: discarded).
	Logger *slog.Logger
	// Retry bounds request retries (zero value: 5 attempts, waits up to 20 s).
	Retry Retry
}

// Open opens the bucket a URL names (see URLForms). The path after the
// bucket is our key prefix inside it; it is stripped before the URL's
// parameters go to the gocloud driver, which would reject or ignore it.
//
//   - s3://bucket/prefix?endpoint=https://host:9000&use_path_style=true&region=us-east-1
//     AWS S3 or a compatible store. Parameters: those of gocloud.dev/aws
//     V2ConfigFromURLParams and of s3blob's URL opener. Credentials come
//     from the AWS SDK's standard chain; a private CA from AWS_CA_BUNDLE.
//   - gs://bucket/prefix   Google Cloud Storage with Application Default
//     Credentials; anonymous=true for public buckets; STORAGE_EMULATOR_HOST
//     selects an emulator (no credentials then).
//   - azblob://container/prefix   Azure Blob Storage. Parameters domain,
//     protocol, localemu, cdn, storage_account; credentials from
//     AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN,
//     AZURE_STORAGE_CONNECTION_STRING, or azidentity's default chain.
//   - file:///dir   an existing local directory (never created).
//   - mem://        an in-process bucket (tests and demos).
//
// Open does not contact the store: call CheckAccess for that.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	bu, err := parseBucketURL(rawURL)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		Scheme:     bu.scheme,
		Prefix:     bu.prefix,
		Display:    bu.display(),
		Limits:     LimitsFor(bu.scheme),
		bucketName: bu.bucket,
		log:        log,
	}
	var sb *s3Bucket
	sidecars := false
	switch bu.scheme {
	case "s3":
		s.bucket, sb, err = openS3(ctx, bu, opts, log)
		if sb != nil {
			s.endpoint = sb.endpoint
		}
	case "gs":
		s.bucket, s.endpoint, err = openGCS(ctx, bu, opts.Retry, log)
	case "azblob":
		s.bucket, s.endpoint, err = openAzure(ctx, bu, opts.Retry, log)
	case "file":
		s.bucket, s.dirMode, sidecars, err = openFile(bu)
		s.fileDir = bu.bucket
	case "mem":
		if err = checkParams("mem", bu.query); err == nil {
			s.bucket = memblob.OpenBucket(nil)
		}
	}
	if err != nil {
		return nil, err
	}
	if sb != nil {
		s.be = &s3Backend{b: s.bucket, s3: sb, bucket: bu.bucket, log: log}
	} else {
		s.be = newBackend(s.bucket, bu.scheme, log)
	}
	if fb, ok := s.be.(*streamBackend); ok && sidecars {
		fb.c.ContentType = true // kept in the .attrs sidecar
	}
	return s, nil
}

// openGCS builds the client itself instead of using gcsblob's URL opener,
// which caches the first credentials it finds for the whole process and
// prints warnings to stdout (where --json output goes).
func openGCS(ctx context.Context, bu *bucketURL, r Retry, log *slog.Logger) (*blob.Bucket, string, error) {
	if err := checkParams("gs", bu.query, "anonymous"); err != nil {
		return nil, "", err
	}
	anonymous := false
	if v := bu.query.Get("anonymous"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, "", usageErr("gs bucket URL parameter anonymous=%q is not true or false", v)
		}
		anonymous = b
	}
	endpoint := "https://storage.googleapis.com"
	var client *gcp.HTTPClient
	if host := os.Getenv("STORAGE_EMULATOR_HOST"); host != "" {
		// gcsblob then talks plain HTTP to the emulator without
		// credentials and ignores client (it must not be nil).
		endpoint = "http://" + strings.TrimPrefix(host, "http://")
		client = gcp.NewAnonymousHTTPClient(gcp.DefaultTransport())
	} else if anonymous {
		client = gcp.NewAnonymousHTTPClient(gcp.DefaultTransport())
	} else {
		creds, err := gcp.DefaultCredentials(ctx)
		if err != nil {
			return nil, "", &failure.Error{Kind: failure.Precondition,
				Err:  fmt.Errorf("no Google Cloud credentials: %s", firstLine(err.Error())),
				Hint: "set GOOGLE_APPLICATION_CREDENTIALS=/path/key.json, run `gcloud auth application-default login`, or run with a service account"}
		}
		client, err = gcp.NewHTTPClient(gcp.DefaultTransport(), creds.TokenSource)
		if err != nil {
			return nil, "", fmt.Errorf("gcs client: %w", err)
		}
	}
	b, err := gcsblob.OpenBucket(ctx, client, bu.bucket, nil)
	if err != nil {
		return nil, "", fmt.Errorf("open gs bucket %s: %w", bu.bucket, err)
	}
	setGCSRetry(b, r, log)
	return b, endpoint, nil
}

// openAzure builds the container client itself: gocloud's default opener
// reads the environment once per process and cannot take retry options.
// The credential sources and their order are gocloud's.
func openAzure(ctx context.Context, bu *bucketURL, r Retry, log *slog.Logger) (*blob.Bucket, string, error) {
	if err := checkParams("azblob", bu.query, "domain", "protocol", "localemu", "cdn", "storage_account"); err != nil {
		return nil, "", err
	}
	def := azureblob.NewDefaultServiceURLOptions()
	so := *def
	for k, v := range bu.query {
		if len(v) != 1 {
			return nil, "", usageErr("azblob bucket URL parameter %s is given %d times", k, len(v))
		}
		switch k {
		case "domain":
			so.StorageDomain = v[0]
		case "protocol":
			so.Protocol = v[0]
		case "storage_account":
			so.AccountName = v[0]
		case "localemu", "cdn":
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return nil, "", usageErr("azblob bucket URL parameter %s=%q is not true or false", k, v[0])
			}
			if k == "cdn" {
				so.IsCDN = b
			} else {
				so.IsLocalEmulator = b
			}
		}
	}
	if so.AccountName == "" {
		return nil, "", &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("no Azure storage account for container %s", bu.bucket),
			Hint: "set AZURE_STORAGE_ACCOUNT (or add storage_account=NAME to the bucket URL)"}
	}
	svc, err := azureblob.NewServiceURL(&so)
	if err != nil {
		return nil, "", usageErr("azblob bucket URL: %v", err)
	}
	// A SAS token is part of the service URL: never send it to another
	// origin than the one it was made for (gocloud's rule too).
	if so.SASToken != "" {
		defSvc, err := azureblob.NewServiceURL(def)
		if err == nil && !sameOrigin(string(defSvc), string(svc)) {
			return nil, "", usageErr("azblob bucket URL may not change the service endpoint while AZURE_STORAGE_SAS_TOKEN is set")
		}
	}
	client, err := azureContainerClient(string(svc), bu.bucket, so.AccountName, r, log)
	if err != nil {
		return nil, "", &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("azure credentials: %s", firstLine(err.Error())),
			Hint: "set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING"}
	}
	b, err := azureblob.OpenBucket(ctx, client, nil)
	if err != nil {
		return nil, "", fmt.Errorf("open azblob container %s: %w", bu.bucket, err)
	}
	endpoint, _, _ := strings.Cut(string(svc), "?") // never print the SAS token
	return b, endpoint, nil
}

func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil &&
		strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}

// openFile opens a directory bucket with:
//   - no_tmp_dir: temporary files go next to the final ones and are renamed
//     in place, on one filesystem (the default, os.TempDir, fails with
//     "invalid cross-device link" when the backup directory is elsewhere);
//   - metadata=skip: no ".attrs" sidecar per object. The directory then holds
//     exactly the object layout (plain .tar.zst files anyone can extract),
//     and a crash cannot leave a sidecar without its file. We lose only the
//     stored content type and MD5, which nothing reads: manifest.json carries
//     each object's size and SHA-256. (metadata= in the URL brings sidecars
//     back.)
//   - directories created with mode 0700 (dir_file_mode overrides): a backup
//     holds the whole database.
//
// The directory itself must exist: it is never created, so that a mistyped
// path or an unmounted mount point is an error rather than a new directory
// (filling the root file system, or answering "no backups").
func openFile(bu *bucketURL) (*blob.Bucket, os.FileMode, bool, error) {
	if err := checkParams("file", bu.query, "no_tmp_dir", "metadata", "dir_file_mode"); err != nil {
		return nil, 0, false, err
	}
	o := &fileblob.Options{NoTempDir: true, Metadata: fileblob.MetadataDontWrite, DirFileMode: 0o700}
	if v, ok := bu.query["metadata"]; ok {
		switch v[0] {
		case "skip":
		case "":
			o.Metadata = fileblob.MetadataInSidecar
		default:
			return nil, 0, false, usageErr("file bucket URL parameter metadata=%q: want skip or empty", v[0])
		}
	}
	if v := bu.query.Get("dir_file_mode"); v != "" {
		m, err := strconv.ParseUint(v, 0, 32)
		if err != nil || m&0o700 != 0o700 || m > 0o777 {
			return nil, 0, false, usageErr("file bucket URL parameter dir_file_mode=%q: want an octal mode like 0750 that the owner can use", v)
		}
		o.DirFileMode = os.FileMode(m)
	}
	switch fi, err := os.Stat(bu.bucket); {
	case os.IsNotExist(err):
		return nil, 0, false, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("bucket directory %s does not exist", bu.bucket),
			Hint: "create it (mkdir -m 700 " + bu.bucket + ") or correct the URL; it is never created for you, so that a mistyped path or an unmounted mount point fails"}
	case err != nil:
		return nil, 0, false, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("bucket directory %s: %s", bu.bucket, firstLine(err.Error())),
			Hint: "check that the path is a directory this user can read and write"}
	case !fi.IsDir():
		return nil, 0, false, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("bucket directory %s is not a directory", bu.bucket),
			Hint: "file:// URLs name a directory"}
	}
	b, err := fileblob.OpenBucket(bu.bucket, o)
	if err != nil {
		return nil, 0, false, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("open directory %s: %s", bu.bucket, firstLine(err.Error())),
			Hint: "check that the path is a directory this user can read and write"}
	}
	return b, o.DirFileMode, o.Metadata == fileblob.MetadataInSidecar, nil
}

// azureContainerClient picks the credential as gocloud's azureblob does:
// shared key (AZURE_STORAGE_KEY), a SAS token already in svc, a connection
// string, else azidentity's default chain.
func azureContainerClient(svc, containerName, account string, r Retry, log *slog.Logger) (*container.Client, error) {
	co := &container.ClientOptions{}
	co.Retry, co.PerCallPolicies, co.PerRetryPolicies = azureRetryOptions(r, log)
	containerURL, err := url.JoinPath(svc, containerName)
	if err != nil {
		return nil, err
	}
	cs := os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
	if cs == "" {
		cs = os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING")
	}
	switch key := os.Getenv("AZURE_STORAGE_KEY"); {
	case key != "":
		cred, err := azblob.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, fmt.Errorf("AZURE_STORAGE_KEY: %w", err)
		}
		return container.NewClientWithSharedKeyCredential(containerURL, cred, co)
	case os.Getenv("AZURE_STORAGE_SAS_TOKEN") != "":
		return container.NewClientWithNoCredential(containerURL, co)
	case cs != "":
		return container.NewClientFromConnectionString(cs, containerName, co)
	default:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, err
		}
		return container.NewClient(containerURL, cred, co)
	}
}
