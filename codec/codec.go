// Package codec names the compression formats an archive can be stored in and
// gives streaming writers and readers for them.
//
// Every format is the standard one its command-line tool reads (zstd -d,
// lz4 -d, gzip -d), so a stored archive never needs this program to be
// extracted. Encoders and decoders come from pools and are Reset for each
// stream: a backup writes many objects and must not allocate a multi-MiB
// encoder state for each.
//
// Writers returned by NewWriter never close the io.Writer beneath them; Close
// flushes the format's trailer and hands the encoder back to its pool (also
// after a failed write, so an aborted stream does not leak it). A writer or
// reader must not be used after Close.
package codec

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// Codec is one compression format.
type Codec interface {
	// Name is what users pass to select it: "none", "zstd", "lz4", "gzip".
	Name() string
	// Ext is the suffix added to object keys: "", ".zst", ".lz4", ".gz".
	Ext() string
	// ContentType is the MIME type of its output ("" for none: the type
	// is the content's own, which only the caller knows).
	ContentType() string
	// NewWriter compresses into w.
	NewWriter(w io.Writer) (io.WriteCloser, error)
	// NewReader decompresses from r.
	NewReader(r io.Reader) (io.ReadCloser, error)
}

// names lists the accepted codec names, the default (zstd) first.
var names = []string{"zstd", "lz4", "gzip", "none"}

// Names returns the accepted codec names, the default first.
func Names() []string { return append([]string(nil), names...) }

// Lookup returns the codec called name.
func Lookup(name string) (Codec, error) {
	switch name {
	case "none":
		return None, nil
	case "zstd":
		return Zstd, nil
	case "lz4":
		return LZ4, nil
	case "gzip":
		return Gzip, nil
	}
	return nil, failure.Wrap(failure.Usage,
		fmt.Errorf("unknown compression %q", name),
		"choose one of: "+strings.Join(names, ", "))
}

// ForExt returns the codec whose Ext is ext ("" is none). Any other suffix
// (".bz2", ".zst.tmp") is an error: the object was not stored by us and must
// not be read as plain bytes. Volume names are parsed by storage, which
// calls this for their suffix.
func ForExt(ext string) (Codec, error) {
	for _, c := range []Codec{None, Zstd, LZ4, Gzip} {
		if c.Ext() == ext {
			return c, nil
		}
	}
	return nil, failure.New(failure.Failed, "unsupported compression suffix %q", ext)
}
