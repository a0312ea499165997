package manifest

import (
	"bytes"
	"strings"
	"testing"
)

// countingReader counts what was read from it.
type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestReadBounded(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 100)
	if got, err := ReadBounded(bytes.NewReader(data), 100, 100, "obj"); err != nil || len(got) != 100 {
		t.Errorf("at the limit: %d bytes, %v", len(got), err)
	}
	// Declared too big: refused without reading.
	cr := &countingReader{r: bytes.NewReader(data)}
	if _, err := ReadBounded(cr, 100, 99, "obj"); err == nil || !strings.Contains(err.Error(), "more than the 99") || cr.n != 0 {
		t.Errorf("declared over the limit: %v after reading %d bytes", err, cr.n)
	}
	// Size unknown or lying: at most limit+1 bytes are read.
	cr = &countingReader{r: bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))}
	if _, err := ReadBounded(cr, -1, 1000, "obj"); err == nil || cr.n > 1001+512 {
		t.Errorf("endless object: %v after reading %d bytes", err, cr.n)
	}
}

func TestUnmarshalRefusesLongLabel(t *testing.T) {
	b := sampleBackup()
	b.Label = strings.Repeat("l", MaxLabelLen+1)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(data); err == nil || !strings.Contains(err.Error(), "label") {
		t.Errorf("label of %d bytes: %v", len(b.Label), err)
	}
	b.Label = strings.Repeat("l", MaxLabelLen)
	data, _ = b.Marshal()
	if _, err := Unmarshal(data); err != nil {
		t.Errorf("label of %d bytes refused: %v", len(b.Label), err)
	}
}
