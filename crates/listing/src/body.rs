//! The body of a listing: the page head, the shared list (rendered when first polled), the
//! tail.

use crate::cache::{DirListing, Listings};
use crate::render::Snapshot;
use crate::shared::Joined;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use httpserve_core::PageBody;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;

/// The body of [`Listing`](crate::Listing)'s responses: a listing page, or an error page.
///
/// The list itself is rendered only when the body is first polled, and shared by every
/// response for the same directory version; a body dropped unread (a `304`) renders nothing.
#[derive(Debug)]
pub struct ListingBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Page(PageBody),
    List(Box<List>),
}

#[derive(Debug)]
struct List {
    head: Option<Bytes>,
    tail: Option<Bytes>,
    /// Bytes not yet sent.
    remaining: u64,
    listings: Arc<Listings>,
    listing: Arc<DirListing>,
    /// Until the list is rendered.
    snapshot: Option<Arc<Snapshot>>,
    rx: Option<oneshot::Receiver<Bytes>>,
    retries: u8,
}

/// Renders given up (their job failed) before the body fails.
const MAX_RETRIES: u8 = 3;

impl ListingBody {
    pub(crate) fn page(page: PageBody) -> Self {
        Self {
            kind: Kind::Page(page),
        }
    }

    pub(crate) fn empty() -> Self {
        Self::page(PageBody::default())
    }

    pub(crate) fn listing(
        head: Bytes,
        tail: Bytes,
        len: usize,
        listings: Arc<Listings>,
        listing: Arc<DirListing>,
        snapshot: Arc<Snapshot>,
    ) -> Self {
        Self {
            kind: Kind::List(Box::new(List {
                head: Some(head),
                tail: Some(tail),
                remaining: len as u64,
                listings,
                listing,
                snapshot: Some(snapshot),
                rx: None,
                retries: 0,
            })),
        }
    }
}

impl List {
    fn data(&mut self, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    /// The rendered list, once: `None` when it has been sent already.
    fn poll_list(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        loop {
            if let Some(rx) = &mut self.rx {
                match ready!(Pin::new(rx).poll(cx)) {
                    Ok(list) => {
                        self.rx = None;
                        self.snapshot = None;
                        return Poll::Ready(Some(Ok(list)));
                    }
                    Err(_) if self.retries < MAX_RETRIES => {
                        self.retries += 1;
                        self.rx = None;
                    }
                    Err(_) => {
                        return Poll::Ready(Some(Err(std::io::Error::other(
                            "the directory listing could not be rendered",
                        ))));
                    }
                }
            }
            let Some(snapshot) = &self.snapshot else {
                return Poll::Ready(None);
            };
            match self.listings.join_page(&self.listing, snapshot) {
                Joined::Ready(list) => {
                    self.snapshot = None;
                    return Poll::Ready(Some(Ok(list)));
                }
                Joined::Wait(rx) | Joined::Start(rx) => self.rx = Some(rx),
                // A page may always be joined late: its snapshot is fixed.
                Joined::Refused => return Poll::Ready(None),
            }
        }
    }
}

impl Body for ListingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let list = match &mut self.get_mut().kind {
            Kind::Page(page) => {
                return Pin::new(page)
                    .poll_frame(cx)
                    .map_err(|never| match never {});
            }
            Kind::List(list) => list,
        };
        if let Some(head) = list.head.take() {
            return list.data(head);
        }
        match ready!(list.poll_list(cx)) {
            Some(Ok(rendered)) if !rendered.is_empty() => return list.data(rendered),
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
        }
        match list.tail.take() {
            Some(tail) => list.data(tail),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Page(page) => page.is_end_stream(),
            Kind::List(list) => list.remaining == 0 && list.tail.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Page(page) => page.size_hint(),
            Kind::List(list) => SizeHint::with_exact(list.remaining),
        }
    }
}
