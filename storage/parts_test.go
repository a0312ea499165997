package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPartPool: buffers come back for reuse, Get waits while the budget is
// taken and gives up with its context, and a part larger than the budget is
// refused rather than waited for forever.
func TestPartPool(t *testing.T) {
	ctx := context.Background()
	p := NewPartPool(2 << 20)
	a, err := p.Get(ctx, 1<<20)
	if err != nil || len(a) != 1<<20 {
		t.Fatalf("Get = %d bytes, %v", len(a), err)
	}
	b, err := p.Get(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short, 1<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get over the budget = %v, want it to wait until its context ends", err)
	}
	got := make(chan []byte)
	go func() {
		c, _ := p.Get(ctx, 1<<20)
		got <- c
	}()
	a[0] = 42
	p.Put(a)
	c := <-got
	if &c[0] != &a[0] || c[0] != 42 {
		t.Errorf("Get after Put did not reuse the returned buffer")
	}
	p.Put(b)
	p.Put(c)
	// A different size: the old buffers are dropped to stay in budget.
	d, err := p.Get(ctx, 2<<20)
	if err != nil || len(d) != 2<<20 {
		t.Fatalf("Get of the whole budget = %d, %v", len(d), err)
	}
	p.mu.Lock()
	if p.inUse+p.freeN > p.limit {
		t.Errorf("pool holds %d bytes in use and %d free, over its budget of %d", p.inUse, p.freeN, p.limit)
	}
	p.mu.Unlock()
	p.Put(d)
	if _, err := p.Get(ctx, 3<<20); err == nil {
		t.Error("Get of more than the budget succeeded")
	}
}
