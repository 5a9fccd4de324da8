//! When a script last made progress, in either direction: the idle timeout fires only when
//! neither its request body went in nor its output came out for that long.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A clock shared by the body pump and the output readers of one script. Cheap to touch:
/// one relaxed store of whole milliseconds since the script started.
#[derive(Debug, Clone)]
pub(crate) struct Progress(Arc<Clock>);

#[derive(Debug)]
struct Clock {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    /// A clock that counts the start as progress.
    pub(crate) fn new() -> Self {
        Self(Arc::new(Clock {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }))
    }

    /// Bytes moved just now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Two writers (pump and reader) may race; the later instant must win.
        self.0.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the script counts as idle unless it makes progress before then.
    pub(crate) fn idle_at(&self, idle_timeout: Duration) -> Instant {
        let last = Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed));
        self.0
            .start
            .checked_add(last.saturating_add(idle_timeout))
            .unwrap_or_else(|| crate::body::after(idle_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_in_either_direction_moves_the_idle_instant() {
        let progress = Progress::new();
        let idle = Duration::from_secs(2);
        let first = progress.idle_at(idle);
        assert!(first <= Instant::now() + idle);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Nothing moved: the instant stays where the start put it.
        assert_eq!(progress.idle_at(idle), first);
        // The pump's clone touches it; the reader's view follows.
        let pump = progress.clone();
        pump.touch();
        let moved = progress.idle_at(idle);
        assert!(
            moved >= first + Duration::from_millis(29),
            "{moved:?} {first:?}"
        );
        assert!(moved <= Instant::now() + idle);
    }
}
