"""wsgi.file_wrapper (W14) and when a file may be sent by Go instead (G23)."""
import io
import os
import stat


class FileWrapper:
    """wsgi.file_wrapper (W14), as wsgiref.util.FileWrapper.

    Iterating reads blocks from the current position. When the object is a
    regular file with a path, the response is sent as a File frame instead
    and Go reads the file itself (G23).
    """

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self):
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def region(self):
        """(absolute path, offset, bytes to the end) or None.

        Only for a binary file whose name still leads to the same inode and
        that we can read: the bytes Go sends must be exactly what iterating
        would have produced.
        """
        f = self.filelike
        try:
            mode = f.mode
            name = f.name
            if not isinstance(mode, str) or "b" not in mode or not ("r" in mode or "+" in mode):
                return None
            if not isinstance(name, str) or not name:
                return None
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            path = os.path.abspath(name)
            pst = os.stat(path)
            if (pst.st_dev, pst.st_ino) != (st.st_dev, st.st_ino) or not os.access(path, os.R_OK):
                return None
            offset = f.tell()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        return path, offset, max(st.st_size - offset, 0)
