//! The streaming body of a file response.

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use httpserve_core::{Entry, Resolved};
use rustix::io::{Errno, ReadWriteFlags};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::task::JoinHandle;

/// Files are read in chunks of at most this size, so memory stays flat whatever the file
/// size and however slow the reader. Small, because hyper keeps pulling chunks until it
/// holds its `max_buf_size` (httpserve: 96 KiB) unwritten, so a client that stops reading
/// pins that much plus part of a chunk (measured per stalled connection, all included:
/// ~80 KiB at 32 KiB chunks, ~110 at 48, ~140 at 64, ~270 at 256), while a fast download
/// costs no measurable CPU more.
const CHUNK: u64 = 32 * 1024;

/// The bytes `offset..offset + remaining` of a file an earlier lookup opened, read with
/// `pread` so no seek position is shared.
///
/// Each chunk is first read on the calling thread with `RWF_NOWAIT`, which copies what the
/// page cache holds and never waits for the disk; only a chunk that is not cached goes to the
/// blocking pool. A cached file so costs no thread hand-off at all, and a cold one never
/// stalls the async worker.
///
/// A file of more than one chunk reuses its chunks' memory: once the connection has written
/// a chunk and dropped it, the next chunk is read into the same buffer, which saves an
/// allocation, the zeroing of a chunk and the cache misses of fresh memory on every chunk.
///
/// If the file shrinks while it is being sent, the body ends with an error, so the
/// connection is closed rather than left waiting for bytes that will never come.
#[derive(Debug)]
pub struct FileBody {
    source: Option<Resolved>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    recent: RecentChunks,
}

/// The last two chunks a body handed out (the connection may still be writing them);
/// whichever the connection has let go of is read into next.
#[derive(Debug, Default)]
struct RecentChunks([Option<Bytes>; 2]);

impl RecentChunks {
    /// A buffer of `len` bytes: a chunk the connection has finished with, or a new one.
    fn buffer(&mut self, len: usize) -> BytesMut {
        for slot in &mut self.0 {
            if slot.as_ref().is_some_and(Bytes::is_unique)
                && let Some(Ok(mut buf)) = slot.take().map(Bytes::try_into_mut)
            {
                // Only after a short read is it shorter than `len`; the tail is zeroed, so
                // nothing uninitialised is ever read.
                buf.resize(len, 0);
                return buf;
            }
        }
        BytesMut::zeroed(len)
    }

    /// Keeps a handle on `chunk` so its memory can be reused, if another chunk will follow.
    fn remember(&mut self, chunk: &Bytes, more: bool) {
        if more {
            self.0.rotate_left(1);
            self.0[1] = Some(chunk.clone());
        } else {
            self.0 = [None, None];
        }
    }
}

impl FileBody {
    /// The body of a `HEAD` response: no bytes.
    pub fn empty() -> Self {
        Self {
            source: None,
            offset: 0,
            remaining: 0,
            pending: None,
            recent: RecentChunks::default(),
        }
    }

    /// `count` bytes from `offset` of the file in `resolved` (which must be a file).
    pub fn new(resolved: Resolved, offset: u64, count: u64) -> Self {
        Self {
            source: Some(resolved),
            offset,
            remaining: count,
            pending: None,
            recent: RecentChunks::default(),
        }
    }
}

/// Reads what the page cache holds of the `buf.len()` bytes at `offset` without waiting for
/// the disk, and truncates `buf` to what it read: `false` (and `buf` untouched) if none of
/// it is cached (or the filesystem can't tell), so the caller reads it on the blocking pool.
fn read_cached(resolved: &Resolved, offset: u64, buf: &mut BytesMut) -> io::Result<bool> {
    let file = file_of(resolved)?;
    loop {
        let read = rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(buf)],
            offset,
            ReadWriteFlags::NOWAIT,
        );
        return match read {
            Ok(0) => Err(shrank()),
            Ok(n) => {
                buf.truncate(n);
                Ok(true)
            }
            Err(Errno::INTR) => continue,
            // AGAIN: not cached; OPNOTSUPP/INVAL: the filesystem or kernel lacks RWF_NOWAIT.
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL) => Ok(false),
            Err(e) => Err(e.into()),
        };
    }
}

/// Fills `buf` with the bytes at `offset`, waiting for the disk if it must.
fn read_blocking(resolved: &Resolved, offset: u64, mut buf: BytesMut) -> io::Result<Bytes> {
    let file = file_of(resolved)?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => return Err(shrank()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze())
}

fn file_of(resolved: &Resolved) -> io::Result<&std::fs::File> {
    match resolved.entry() {
        Entry::File { file, .. } => Ok(file),
        _ => Err(io::Error::other("not a file")),
    }
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shrank while it was being sent",
    )
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let Some(source) = &this.source else {
            return Poll::Ready(None);
        };
        let result = if let Some(pending) = &mut this.pending {
            let joined = ready!(Pin::new(pending).poll(cx));
            this.pending = None;
            joined.unwrap_or_else(|e| Err(io::Error::other(e)))
        } else {
            // At most CHUNK, so it fits in usize.
            let len = this.remaining.min(CHUNK) as usize;
            let mut buf = this.recent.buffer(len);
            match read_cached(source, this.offset, &mut buf) {
                Ok(true) => Ok(buf.freeze()),
                Ok(false) => {
                    let (resolved, offset) = (source.clone(), this.offset);
                    this.pending = Some(tokio::task::spawn_blocking(move || {
                        read_blocking(&resolved, offset, buf)
                    }));
                    return Pin::new(this).poll_frame(cx);
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(bytes) => {
                this.offset += bytes.len() as u64;
                this.remaining -= bytes.len() as u64;
                this.recent.remember(&bytes, this.remaining > 0);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Err(e) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        // A read already running finishes on its own; nobody waits for it.
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use httpserve_core::Root;

    fn fixture(len: u32) -> (tempfile::TempDir, Root, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f.bin"), &data).unwrap();
        let root = Root::new(dir.path());
        (dir, root, data)
    }

    async fn collect(body: FileBody) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[test]
    fn cached_and_blocking_reads_agree() {
        let (_dir, root, data) = fixture(300_000);
        let resolved = Resolved::resolve(&root, "/f.bin");
        // Just written, so the page cache holds it (on disk filesystems and tmpfs alike).
        let mut cached = BytesMut::zeroed(CHUNK as usize);
        assert!(read_cached(&resolved, 1000, &mut cached).unwrap());
        assert_eq!(cached, &data[1000..1000 + CHUNK as usize]);
        let blocking = read_blocking(&resolved, 1000, BytesMut::zeroed(CHUNK as usize)).unwrap();
        assert_eq!(blocking, cached);
    }

    #[test]
    fn both_reads_report_a_shrunk_file() {
        let (dir, root, _) = fixture(10_000);
        let resolved = Resolved::resolve(&root, "/f.bin");
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("f.bin"))
            .unwrap()
            .set_len(100)
            .unwrap();
        let cached = read_cached(&resolved, 5000, &mut BytesMut::zeroed(100)).unwrap_err();
        assert_eq!(cached.kind(), io::ErrorKind::UnexpectedEof);
        let blocking = read_blocking(&resolved, 50, BytesMut::zeroed(100)).unwrap_err();
        assert_eq!(blocking.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_file_evicted_from_the_page_cache_is_still_sent_whole() {
        let (dir, root, data) = fixture(1_000_000);
        let file = std::fs::File::open(dir.path().join("f.bin")).unwrap();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let resolved = Resolved::resolve(&root, "/f.bin");
        // tmpfs can't evict; on a disk filesystem the chunk must now go to the blocking pool.
        const TMPFS_MAGIC: u64 = 0x0102_1994;
        if u64::try_from(rustix::fs::fstatfs(&file).unwrap().f_type).unwrap() != TMPFS_MAGIC {
            // The kernel drops a page only once its writeback is done: ask again, a bounded
            // number of times, until the first chunk is really gone.
            let mut buf = BytesMut::zeroed(CHUNK as usize);
            let mut evicted = false;
            for _ in 0..50 {
                if matches!(read_cached(&resolved, 0, &mut buf), Ok(false)) {
                    evicted = true;
                    break;
                }
                file.sync_all().unwrap();
                rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(
                evicted,
                "the page cache kept the file after 50 requests to drop it"
            );
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        }
        let got = collect(FileBody::new(resolved, 10, 999_990)).await;
        assert_eq!(got, &data[10..]);
    }

    #[tokio::test]
    async fn a_range_is_sent_exactly() {
        let (_dir, root, data) = fixture(600_000);
        let resolved = Resolved::resolve(&root, "/f.bin");
        let got = collect(FileBody::new(resolved, 123_456, 400_000)).await;
        assert_eq!(got, &data[123_456..523_456]);
        assert!(collect(FileBody::empty()).await.is_empty());
    }

    #[test]
    fn a_chunk_is_read_into_again_only_once_nobody_else_holds_it() {
        let mut recent = RecentChunks::default();
        let first = recent.buffer(8).freeze();
        let first_at = first.as_ptr();
        recent.remember(&first, true);
        // Still held by the connection: never read into.
        let other = recent.buffer(8);
        assert_ne!(other.as_ptr(), first_at);
        drop(other);
        drop(first);
        // Let go of, it is kept (so no allocation can land on it) and handed out again.
        assert!(
            recent
                .0
                .iter()
                .flatten()
                .any(|b| b.is_unique() && b.as_ptr() == first_at)
        );
        let again = recent.buffer(8);
        assert_eq!(again.as_ptr(), first_at);
        // The last chunk keeps nothing.
        recent.remember(&again.freeze(), false);
        assert!(recent.0.iter().all(Option::is_none));
    }

    #[tokio::test]
    async fn reused_chunks_carry_only_fresh_bytes() {
        // Four chunks and a short tail, each chunk's bytes different from the others'.
        let (_dir, root, data) = fixture(4 * CHUNK as u32 + 1000);
        let resolved = Resolved::resolve(&root, "/f.bin");
        let mut body = FileBody::new(resolved, 0, data.len() as u64);
        let mut got = Vec::new();
        let mut addresses = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            addresses.push(chunk.as_ptr());
            got.extend_from_slice(&chunk);
            // Dropped here, as the connection drops a chunk it has written.
        }
        assert_eq!(got, data);
        assert_eq!(addresses.len(), 5);
        assert!(addresses[1..].iter().all(|&a| a == addresses[0]));

        // Chunks all still held (a slow connection): none is read into.
        let resolved = Resolved::resolve(&root, "/f.bin");
        let mut body = FileBody::new(resolved, 0, data.len() as u64);
        let mut held = Vec::new();
        while let Some(frame) = body.frame().await {
            held.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(held.concat(), data);
    }
}
