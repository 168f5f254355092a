//! The vectors of a build that outgrows `maintenance_work_mem`: written to a temporary file
//! (in `temp_tablespaces`, counted against `temp_file_limit`) and read back through a read-only
//! mapping of it, so the backend's own memory holds only the graph's links while the vectors
//! sit in the OS page cache, as the heap's pages do. Links are what the rayon pool needs to
//! touch densely; a vector is read once per distance, as from an in-memory array.

use core::marker::PhantomData;
use std::ops::Range;

use hnsw_core::graph::VectorMemory;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Bytes gathered before one `write`: few system calls, a bounded buffer.
const WRITE_BUFFER: usize = 1 << 20;

/// A temporary file the vectors are appended to, element type `E`, in node order.
pub(super) struct SpillFile<E> {
    file: pg_sys::File,
    /// Bytes already written to the file; `buf` follows them.
    flushed: usize,
    buf: Vec<u8>,
    _elem: PhantomData<E>,
}

fn io_error(what: &str) -> ! {
    let err = std::io::Error::last_os_error();
    let code = if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(0) {
        PgSqlErrorCode::ERRCODE_DISK_FULL
    } else {
        PgSqlErrorCode::ERRCODE_IO_ERROR
    };
    ereport!(ERROR, code, format!("could not {what} the hnsw build's temporary file: {err}"));
}

fn bytes_of<E>(v: &[E]) -> &[u8] {
    // SAFETY: the element types of vectors (f32, f16, u8, sparse words) are plain data.
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) }
}

impl<E: Copy> SpillFile<E> {
    pub fn create() -> SpillFile<E> {
        // SAFETY: on the backend's thread. The file belongs to the current resource owner, so
        // an ERROR before `map` closes and removes it with the transaction.
        let file = unsafe { pg_sys::OpenTemporaryFile(false) };
        SpillFile { file, flushed: 0, buf: Vec::with_capacity(WRITE_BUFFER), _elem: PhantomData }
    }

    /// Bytes this holds in memory (the write buffer).
    pub fn memory(&self) -> usize {
        self.buf.capacity()
    }

    pub fn append(&mut self, v: &[E]) {
        let bytes = bytes_of(v);
        if self.buf.len() + bytes.len() > WRITE_BUFFER {
            self.flush();
        }
        if bytes.len() > WRITE_BUFFER {
            self.write(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn flush(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let amount = bytes.len().min(1 << 30);
            // SAFETY: `bytes` is valid for `amount` bytes; FileWrite only reads them (its C
            // prototype lacks const). It raises the ERROR of `temp_file_limit` itself.
            let n = unsafe {
                pg_sys::FileWrite(
                    self.file,
                    bytes.as_ptr().cast_mut().cast(),
                    amount as i32,
                    self.flushed as pg_sys::off_t,
                    pg_sys::WaitEventIO::WAIT_EVENT_BUFFILE_WRITE,
                )
            };
            if n <= 0 {
                io_error("write");
            }
            self.flushed += n as usize;
            bytes = &bytes[n as usize..];
        }
    }

    /// Elements `range` (in elements of `E`) of what was appended.
    pub fn read(&self, range: Range<usize>, out: &mut Vec<E>) {
        let size = core::mem::size_of::<E>();
        let (start, end) = (range.start * size, range.end * size);
        let mut bytes = vec![0u8; end - start];
        let from_file = end.min(self.flushed).saturating_sub(start);
        if from_file > 0 {
            // SAFETY: `bytes` has room for `from_file` bytes.
            let n = unsafe {
                pg_sys::FileRead(
                    self.file,
                    bytes.as_mut_ptr().cast(),
                    from_file as i32,
                    start as pg_sys::off_t,
                    pg_sys::WaitEventIO::WAIT_EVENT_BUFFILE_READ,
                )
            };
            if n != from_file as i32 {
                io_error("read");
            }
        }
        if end > self.flushed {
            let in_buf = start.max(self.flushed) - self.flushed..end - self.flushed;
            bytes[from_file..].copy_from_slice(&self.buf[in_buf]);
        }
        out.clear();
        // SAFETY: `bytes` holds whole elements written from values of type `E`; read_unaligned
        // because a Vec<u8> is not aligned for `E`.
        out.extend((0..range.len()).map(|i| unsafe { bytes.as_ptr().add(i * size).cast::<E>().read_unaligned() }));
    }

    /// Everything appended, mapped read-only. The file is closed (and its name removed) at
    /// once: the mapping keeps its contents until it is dropped.
    pub fn map(mut self) -> Mapped<E> {
        self.flush();
        let len = self.flushed;
        // SAFETY: FileSize reopens the file if fd.c closed its descriptor to stay under its
        // limit of open files, so FileGetRawDesc right after returns an open descriptor.
        let fd = unsafe {
            if (pg_sys::FileSize(self.file) as usize) < len {
                io_error("size");
            }
            pg_sys::FileGetRawDesc(self.file)
        };
        let ptr = if len == 0 {
            core::ptr::NonNull::<E>::dangling().as_ptr().cast::<libc::c_void>()
        } else {
            // SAFETY: a read-only shared mapping of `len` bytes of an open file we wrote.
            let p = unsafe { libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
            if p == libc::MAP_FAILED {
                io_error("map");
            }
            p
        };
        // SAFETY: the file is ours; closing it removes its name, not the mapped contents.
        unsafe { pg_sys::FileClose(self.file) };
        self.file = 0;
        Mapped { ptr, bytes: len, _elem: PhantomData }
    }
}

impl<E> Drop for SpillFile<E> {
    fn drop(&mut self) {
        // On an ERROR the resource owner closes (and removes) the file; otherwise do it here.
        if self.file > 0 && !std::thread::panicking() {
            // SAFETY: on the backend's thread (the build state lives there); the file is open.
            unsafe { pg_sys::FileClose(self.file) };
        }
    }
}

/// The vectors of a [`SpillFile`], mapped; unmapped on drop.
pub(super) struct Mapped<E> {
    ptr: *mut libc::c_void,
    bytes: usize,
    _elem: PhantomData<E>,
}

// SAFETY: a read-only mapping that nothing writes; any thread may read it while it lives.
unsafe impl<E> Send for Mapped<E> {}
// SAFETY: as above.
unsafe impl<E> Sync for Mapped<E> {}

impl<E: Copy + 'static> VectorMemory<E> for Mapped<E> {
    fn as_slice(&self) -> &[E] {
        // SAFETY: the mapping holds `bytes` bytes written from whole values of `E`, and is
        // page-aligned, so aligned for `E`; it lives as long as `self`.
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<E>(), self.bytes / core::mem::size_of::<E>()) }
    }
}

impl<E> Drop for Mapped<E> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            // SAFETY: the mapping made in `SpillFile::map`, unmapped once.
            unsafe { libc::munmap(self.ptr, self.bytes) };
        }
    }
}
