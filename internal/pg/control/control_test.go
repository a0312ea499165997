package control

import (
	"encoding/binary"
	"testing"
)

func TestParse(t *testing.T) {
	b := make([]byte, FileSize)
	binary.LittleEndian.PutUint64(b[0:], 7312345678901234567)
	binary.LittleEndian.PutUint32(b[8:], 1300)
	binary.LittleEndian.PutUint32(b[12:], 202209061)
	d, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Data{SystemIdentifier: 7312345678901234567, ControlVersion: 1300, CatalogVersion: 202209061}
	if d != want {
		t.Fatalf("Parse = %+v, want %+v", d, want)
	}
	for _, n := range []int{0, 15} {
		if _, err := Parse(b[:n]); err == nil {
			t.Errorf("Parse of %d bytes: no error", n)
		}
	}
}
