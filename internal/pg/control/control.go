// Package control reads PostgreSQL's pg_control file (ControlFileData).
package control

import (
	"encoding/binary"
	"fmt"
)

// FileSize is PG_CONTROL_FILE_SIZE: pg_control is always this long.
const FileSize = 8192

// Data is the part of pg_control (ControlFileData) we read: the leading
// fields whose layout has not changed since PostgreSQL 9.
type Data struct {
	SystemIdentifier uint64
	ControlVersion   uint32
	CatalogVersion   uint32
}

// Parse decodes the leading fields of pg_control. It assumes the
// little-endian layout of the platforms PostgreSQL runs on here.
func Parse(b []byte) (Data, error) {
	if len(b) < 16 {
		return Data{}, fmt.Errorf("pg_control is %d bytes, too short", len(b))
	}
	le := binary.LittleEndian
	return Data{
		SystemIdentifier: le.Uint64(b[0:]),
		ControlVersion:   le.Uint32(b[8:]),
		CatalogVersion:   le.Uint32(b[12:]),
	}, nil
}
