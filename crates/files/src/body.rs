//! The streaming body of a file response.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use httpserve_core::{Entry, Resolved};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::task::JoinHandle;

/// Up to this many bytes are read on the calling thread: a small read from the page cache
/// costs less than a round trip to the blocking pool.
const INLINE_READ: u64 = 64 * 1024;
/// Larger reads go to the blocking pool in chunks of this size, so memory stays flat
/// whatever the file size and however slow the reader.
const CHUNK: u64 = 256 * 1024;

/// The bytes `offset..offset + remaining` of a file an earlier lookup opened, read with
/// `pread` so no seek position is shared.
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

fn read_chunk(resolved: &Resolved, offset: u64, len: u64) -> io::Result<Bytes> {
    let Entry::File { file, .. } = resolved.entry() else {
        return Err(io::Error::other("not a file"));
    };
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being sent",
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(buf))
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
        } else if this.remaining <= INLINE_READ {
            read_chunk(source, this.offset, this.remaining)
        } else {
            let (resolved, offset, len) = (source.clone(), this.offset, this.remaining.min(CHUNK));
            this.pending = Some(tokio::task::spawn_blocking(move || {
                read_chunk(&resolved, offset, len)
            }));
            return Pin::new(this).poll_frame(cx);
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
