package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// discardUncommitted is Azure's "abort multipart upload": a block blob
// upload that failed leaves the blocks it staged, uncommitted, for Azure to
// drop after 7 days. For each blob under keyPrefix that has uncommitted
// blocks and no committed version, it commits an empty block list (which
// discards the staged blocks; If-None-Match: * so a blob committed in the
// meantime is left alone) and deletes the resulting empty blob. It returns
// how many it discarded.
func discardUncommitted(ctx context.Context, cc *container.Client, keyPrefix string) (int, error) {
	n := 0
	err := eachUncommitted(ctx, cc, keyPrefix, func(name string) error {
		done, err := discardBlocks(ctx, cc.NewBlockBlobClient(name))
		if err != nil {
			return fmt.Errorf("discard uncommitted blocks of %s: %w", name, err)
		}
		if done {
			n++
		}
		return nil
	})
	return n, err
}

// listUncommitted returns the blobs under keyPrefix that have uncommitted
// blocks.
func listUncommitted(ctx context.Context, cc *container.Client, keyPrefix string) ([]string, error) {
	var keys []string
	err := eachUncommitted(ctx, cc, keyPrefix, func(name string) error {
		list, err := cc.NewBlockBlobClient(name).GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
		switch {
		case err != nil && isAzureCode(err, "BlobNotFound"):
		case err != nil:
			return fmt.Errorf("list blocks of %s: %w", name, err)
		case len(list.UncommittedBlocks) > 0:
			keys = append(keys, name)
		}
		return nil
	})
	return keys, err
}

// eachUncommitted calls fn for every blob under keyPrefix that a listing
// including uncommitted blobs shows.
func eachUncommitted(ctx context.Context, cc *container.Client, keyPrefix string, fn func(name string) error) error {
	pager := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix:  &keyPrefix,
		Include: container.ListBlobsInclude{UncommittedBlobs: true},
	})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list uncommitted blobs under %q: %w", keyPrefix, err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil {
				continue
			}
			if err := fn(*it.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func discardBlocks(ctx context.Context, bb *blockblob.Client) (bool, error) {
	list, err := bb.GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
	if err != nil {
		if isAzureCode(err, "BlobNotFound") {
			return false, nil
		}
		return false, err
	}
	if len(list.UncommittedBlocks) == 0 {
		return false, nil
	}
	anyETag := azcore.ETagAny
	_, err = bb.CommitBlockList(ctx, nil, &blockblob.CommitBlockListOptions{
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &anyETag}},
	})
	if err != nil {
		if isAzureCode(err, "BlobAlreadyExists") || isAzureCode(err, "ConditionNotMet") {
			return false, nil // a committed blob: not a leftover upload
		}
		return false, err
	}
	if _, err := bb.Delete(ctx, nil); err != nil && !isAzureCode(err, "BlobNotFound") {
		return false, err
	}
	return true, nil
}

func isAzureCode(err error, code string) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode == code
	}
	return strings.Contains(err.Error(), code)
}
