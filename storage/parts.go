package storage

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/semaphore"
)

// PartPool hands out multipart part buffers under one byte budget shared by
// every upload of a Store, and reuses them across parts and objects: the
// memory of all uploads in flight is the budget, whatever the number of
// objects, and the garbage collector sees no new part buffer per object.
//
// Get blocks while the budget is taken. A caller holds at most the buffer it
// fills while it waits for another (the others are being uploaded and come
// back by themselves), so uploads sharing a pool cannot deadlock as long as
// the budget holds one part (NewPartPool refuses less than that at use).
type PartPool struct {
	limit int64
	sem   *semaphore.Weighted // bytes handed out

	mu    sync.Mutex
	inUse int64    // bytes handed out
	free  [][]byte // returned buffers, kept while they fit the budget
	freeN int64    // bytes in free
}

// NewPartPool returns a pool of at most limit bytes of part buffers.
func NewPartPool(limit int64) *PartPool {
	return &PartPool{limit: limit, sem: semaphore.NewWeighted(limit)}
}

// Limit returns the pool's budget in bytes.
func (p *PartPool) Limit() int64 { return p.limit }

// Get returns a buffer of size bytes, waiting for the budget; the caller
// must Put it back.
func (p *PartPool) Get(ctx context.Context, size int) ([]byte, error) {
	if int64(size) > p.limit {
		return nil, fmt.Errorf("part of %d bytes does not fit the part buffer budget of %d bytes", size, p.limit)
	}
	if err := p.sem.Acquire(ctx, int64(size)); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse += int64(size)
	for i, b := range p.free {
		if cap(b) == size {
			p.free[i] = p.free[len(p.free)-1]
			p.free = p.free[:len(p.free)-1]
			p.freeN -= int64(size)
			return b[:size], nil
		}
	}
	// Buffers of other sizes that no longer fit are left to the collector.
	for len(p.free) > 0 && p.inUse+p.freeN > p.limit {
		p.freeN -= int64(cap(p.free[0]))
		p.free[0] = nil
		p.free = p.free[1:]
	}
	return make([]byte, size), nil
}

// Put returns a buffer from Get.
func (p *PartPool) Put(b []byte) {
	p.mu.Lock()
	p.inUse -= int64(cap(b))
	p.free = append(p.free, b[:cap(b)])
	p.freeN += int64(cap(b))
	p.mu.Unlock()
	p.sem.Release(int64(cap(b)))
}
