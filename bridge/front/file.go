package front

import (
	"io"
	"os"
)

// openRegion opens the part of a file a runner asked to send (a File frame):
// n bytes from offset, or to the end when n < 0. The reader is the file
// itself or a LimitedReader over it, which both keep io.Copy on sendfile(2).
func openRegion(path string, offset, n int64) (*os.File, io.Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	if n < 0 {
		return f, f, nil
	}
	return f, io.LimitReader(f, n), nil
}
