package storage_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestAzureDiscardUncommitted: AbortIncompleteUploads discards the staged,
// never-committed blocks under a prefix (Azure's leftover of a failed
// upload), and leaves committed blobs and blobs outside the prefix alone.
func TestAzureDiscardUncommitted(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "ctr")
	a.SetEnv(t)
	s := openURL(t, a.BucketURL("ctr", "p"))
	ctx := context.Background()

	cred, err := azblob.NewSharedKeyCredential(testsvc.AzuriteAccount, testsvc.AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(a.Endpoint+"/ctr", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	stage := func(key string) {
		id := base64.StdEncoding.EncodeToString([]byte("block-0000000001"))
		body := nopCloser{bytes.NewReader([]byte("staged"))}
		if _, err := cc.NewBlockBlobClient(key).StageBlock(ctx, id, body, nil); err != nil {
			t.Fatalf("stage %s: %v", key, err)
		}
	}
	uncommitted := func(key string) int {
		l, err := cc.NewBlockBlobClient(key).GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
		if err != nil {
			return 0 // BlobNotFound: nothing staged, nothing committed
		}
		return len(l.UncommittedBlocks)
	}
	stage("p/backups/1/base.00001.tar.zst")
	stage("p/backups/1/base.00002.tar.zst")
	stage("p/backups/2/base.00001.tar.zst") // another backup
	if err := s.WriteAll(ctx, "p/backups/1/16385.00001.tar.zst", []byte("committed"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if uncommitted("p/backups/1/base.00001.tar.zst") != 1 {
		t.Fatal("the check does not see a staged block")
	}
	if p, err := s.PendingUploads(ctx, s.BackupKey("1", "")); err != nil || !slices.Equal(p, []string{"p/backups/1/base.00001.tar.zst", "p/backups/1/base.00002.tar.zst"}) {
		t.Fatalf("PendingUploads = %v, %v; want the two staged blobs of backup 1", p, err)
	}

	n, err := s.AbortIncompleteUploads(ctx, s.BackupKey("1", ""))
	if err != nil || n != 2 {
		t.Fatalf("AbortIncompleteUploads = %d, %v; want 2 discarded", n, err)
	}
	for _, k := range []string{"p/backups/1/base.00001.tar.zst", "p/backups/1/base.00002.tar.zst"} {
		if u := uncommitted(k); u != 0 {
			t.Errorf("%s: %d uncommitted blocks left", k, u)
		}
		if ok, _ := s.Exists(ctx, k); ok {
			t.Errorf("%s: an (empty) blob was left behind", k)
		}
	}
	if uncommitted("p/backups/2/base.00001.tar.zst") != 1 {
		t.Error("the blocks of another backup were discarded")
	}
	if p, err := s.PendingUploads(ctx, s.BackupKey("1", "")); err != nil || len(p) != 0 {
		t.Errorf("PendingUploads after the discard = %v, %v", p, err)
	}

	// A failed upload discards the staged blocks of its key (here those of
	// an earlier attempt that died), as S3's sweep aborts its parts.
	key := "p/backups/3/base.00001.tar.zst"
	stage(key)
	w := s.NewWriter(ctx, key, storage.WriteOptions{})
	if _, err := w.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	cause := errors.New("producer died")
	if err := w.Abort(cause); !errors.Is(err, cause) {
		t.Fatalf("Abort = %v", err)
	}
	if u := uncommitted(key); u != 0 {
		t.Errorf("%s: %d staged blocks left after a failed upload", key, u)
	}
	if ok, _ := s.Exists(ctx, key); ok {
		t.Errorf("%s: a failed upload left a blob", key)
	}
	if b, err := s.ReadAll(ctx, "p/backups/1/16385.00001.tar.zst", 100); err != nil || string(b) != "committed" {
		t.Errorf("a committed blob was touched: %q, %v", b, err)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
