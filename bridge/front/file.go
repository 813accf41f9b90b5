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

// sendChunk is how much of a file goes out under one write deadline: a
// client that keeps reading is never cut, one that stops is cut after the
// write timeout.
const sendChunk = 1 << 20

// copyWithDeadlines copies body to w in sendChunk pieces, calling arm
// before each (it sets the connection's write deadline). A LimitedReader
// over the file keeps io.Copy on sendfile(2).
func copyWithDeadlines(w io.Writer, body io.Reader, arm func()) error {
	for {
		arm()
		n, err := io.CopyN(w, body, sendChunk)
		if err == io.EOF || (err == nil && n < sendChunk) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
