package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// testObjectDoor checks the Store methods catalog, restore, walarchive and
// cmd use instead of the bucket: one ErrNotFound for every missing-object
// path, ErrExists for a refused conditional create (the existing object
// untouched), ranges, metadata, bounded reads and paged listing.
func testObjectDoor(t *testing.T, s *Target) {
	ctx := ctxFor(t)
	missing := s.Key("door/missing")
	if _, err := s.NewReader(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("NewReader(missing) = %v, want ErrNotFound", err)
	}
	_, err := s.Attributes(ctx, missing)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Attributes(missing) = %v, want ErrNotFound", err)
	}
	// Still classified as before: the driver's error stays in the chain.
	if cerr := s.Classify(err, "look up"); failure.KindOf(cerr) != failure.Precondition {
		t.Errorf("Classify(Attributes(missing)) kind %v, want Precondition: %v", failure.KindOf(cerr), cerr)
	}
	if ok, err := s.Exists(ctx, missing); ok || err != nil {
		t.Errorf("Exists(missing) = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.ReadAll(ctx, missing, 10); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReadAll(missing) = %v, want ErrNotFound", err)
	}

	key := s.Key("door/obj")
	data := pattern(3000, 7)
	meta := map[string]string{"sha256": "abc", "size": "3000"}
	if err := s.Write(ctx, key, bytes.NewReader(data), storage.WriteOptions{ContentType: "application/zstd", Metadata: meta, IfNotExist: true}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	err = s.Write(ctx, key, bytes.NewReader([]byte("other")), storage.WriteOptions{IfNotExist: true})
	if !errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second conditional Write = %v, want ErrExists", err)
	}
	err = s.WriteAll(ctx, key, []byte("other"), storage.WriteOptions{IfNotExist: true})
	if !errors.Is(err, storage.ErrExists) {
		t.Errorf("conditional WriteAll over an object = %v, want ErrExists", err)
	}
	if got, err := s.ReadAll(ctx, key, int64(len(data))); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll after refused overwrites: %d bytes, %v; want the first %d bytes", len(got), err, len(data))
	}
	if _, err := s.ReadAll(ctx, key, int64(len(data))-1); err == nil {
		t.Errorf("ReadAll with a limit under the size: no error")
	}
	a, err := s.Attributes(ctx, key)
	if err != nil {
		t.Fatalf("Attributes: %v", err)
	}
	if a.Size != int64(len(data)) {
		t.Errorf("Attributes.Size = %d, want %d", a.Size, len(data))
	}
	// Metadata is what the driver keeps (a backend may keep none), and
	// what was written where it keeps it.
	ba, err := s.Bucket.Attributes(ctx, key)
	if err != nil {
		t.Fatalf("driver Attributes: %v", err)
	}
	if !reflect.DeepEqual(ba.Metadata, a.Metadata) || ba.ContentType != a.ContentType || !ba.ModTime.Equal(a.ModTime) {
		t.Errorf("Attributes = %+v, the driver's metadata %v, type %q, time %v", a, ba.Metadata, ba.ContentType, ba.ModTime)
	}
	if len(a.Metadata) > 0 && (a.Metadata["sha256"] != "abc" || a.Metadata["size"] != "3000") {
		t.Errorf("Attributes.Metadata = %v, want sha256=abc size=3000", a.Metadata)
	}
	if ok, err := s.Exists(ctx, key); !ok || err != nil {
		t.Errorf("Exists = %v, %v; want true, nil", ok, err)
	}
	r, err := s.NewRangeReader(ctx, key, 1000, 24)
	if err != nil {
		t.Fatalf("NewRangeReader: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data[1000:1024]) || r.Size() != int64(len(data)) {
		t.Errorf("range [1000,1024): %d bytes (size %d), %v", len(got), r.Size(), err)
	}

	// Paged listing: pages of 2 cover the prefix exactly once, in order.
	var want []string
	for i := range 5 {
		k := s.Key(fmt.Sprintf("door/list/%d", i))
		put(t, s, k, []byte{byte(i)})
		want = append(want, k)
	}
	var keys []string
	var token []byte
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("ListPage does not end")
		}
		objs, next, err := s.ListPage(ctx, s.Key("door/list/"), token, 2)
		if err != nil {
			t.Fatalf("ListPage: %v", err)
		}
		if len(objs) > 2 {
			t.Fatalf("ListPage(2) returned %d objects", len(objs))
		}
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		if next == nil {
			break
		}
		token = next
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("ListPage keys %v, want %v", keys, want)
	}
	it := s.List(s.Key("door/list/"))
	keys = nil
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		keys = append(keys, o.Key)
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("List keys %v, want %v", keys, want)
	}

	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if exists(t, s, key) {
		t.Errorf("%s still exists after Delete", key)
	}
	if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Delete(missing) = %v, want ErrNotFound", err)
	}
}
