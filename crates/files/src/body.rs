//! The streaming body of a file response.

use bytes::Bytes;
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
/// size and however slow the reader.
const CHUNK: u64 = 256 * 1024;

/// The bytes `offset..offset + remaining` of a file an earlier lookup opened, read with
/// `pread` so no seek position is shared.
///
/// Each chunk is first read on the calling thread with `RWF_NOWAIT`, which copies what the
/// page cache holds and never waits for the disk; only a chunk that is not cached goes to the
/// blocking pool. A cached file so costs no thread hand-off at all, and a cold one never
/// stalls the async worker.
///
/// If the file shrinks while it is being sent, the body ends with an error, so the
/// connection is closed rather than left waiting for bytes that will never come.
#[derive(Debug)]
pub struct FileBody {
    source: Option<Resolved>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    /// The body of a `HEAD` response: no bytes.
    pub fn empty() -> Self {
        Self {
            source: None,
            offset: 0,
            remaining: 0,
            pending: None,
        }
    }

    /// `count` bytes from `offset` of the file in `resolved` (which must be a file).
    pub fn new(resolved: Resolved, offset: u64, count: u64) -> Self {
        Self {
            source: Some(resolved),
            offset,
            remaining: count,
            pending: None,
        }
    }
}

/// Reads what the page cache holds of `offset..offset + len` without waiting for the disk:
/// `None` if none of it is cached (or the filesystem can't tell), so the caller reads it on
/// the blocking pool instead.
fn read_cached(resolved: &Resolved, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
    let file = file_of(resolved)?;
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    loop {
        let read = rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut buf)],
            offset,
            ReadWriteFlags::NOWAIT,
        );
        return match read {
            Ok(0) => Err(shrank()),
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(Bytes::from(buf)))
            }
            Err(Errno::INTR) => continue,
            // AGAIN: not cached; OPNOTSUPP/INVAL: the filesystem or kernel lacks RWF_NOWAIT.
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL) => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
}

/// Reads all of `offset..offset + len`, waiting for the disk if it must.
fn read_blocking(resolved: &Resolved, offset: u64, len: u64) -> io::Result<Bytes> {
    let file = file_of(resolved)?;
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => return Err(shrank()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(buf))
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
            let len = this.remaining.min(CHUNK);
            match read_cached(source, this.offset, len) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => {
                    let (resolved, offset) = (source.clone(), this.offset);
                    this.pending = Some(tokio::task::spawn_blocking(move || {
                        read_blocking(&resolved, offset, len)
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
        let cached = read_cached(&resolved, 1000, CHUNK).unwrap().unwrap();
        assert_eq!(cached, &data[1000..1000 + CHUNK as usize]);
        let blocking = read_blocking(&resolved, 1000, CHUNK).unwrap();
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
        let cached = read_cached(&resolved, 5000, 100).unwrap_err();
        assert_eq!(cached.kind(), io::ErrorKind::UnexpectedEof);
        let blocking = read_blocking(&resolved, 50, 100).unwrap_err();
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
            assert!(matches!(read_cached(&resolved, 0, CHUNK), Ok(None)));
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
}
