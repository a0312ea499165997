package storage

import "gocloud.dev/blob"

// BucketOf returns the driver bucket behind s, for the conformance suite
// (storagetest.Run) only: compiled into storage's own tests, never into
// the package.
func BucketOf(s *Store) *blob.Bucket { return s.bucket }
