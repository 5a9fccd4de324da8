//! Listings shared between requests: one read and one render per directory version, at
//! most `render_limit` of them at a time, the settled ones kept within a byte budget.

use crate::render::{self, ScanError, Snapshot};
use crate::shared::{Joined, Shared};
use bytes::Bytes;
use httpserve_core::Resolved;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// A directory's timestamps younger than this cannot tell a later change in the same
/// clock tick apart (RFC 9110 §8.8.2.2; git's "racy" rule): such a version is never cached.
const SETTLE: Duration = Duration::from_secs(1);

/// Whether the directory's file system moves a directory's timestamps, to the
/// nanosecond, with every change of its entries; on others (FAT's 2-second steps, procfs,
/// network and FUSE file systems whose times are cached or fixed) a listing is never cached.
fn exact_dir_times(resolved: &Resolved) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const F2FS: i64 = 0xF2F5_2010;
    const ZFS: i64 = 0x2FC1_2FC1;
    const OVERLAYFS: i64 = 0x794C_7630;
    let httpserve_core::Entry::Directory { dir, .. } = resolved.entry() else {
        return false;
    };
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::useless_conversion)]
    rustix::fs::fstatfs(dir).is_ok_and(|fs| {
        matches!(
            i64::from(fs.f_type),
            EXT4 | XFS | BTRFS | TMPFS | F2FS | ZFS | OVERLAYFS
        )
    })
}

/// Memory a finished listing is charged besides its page or snapshot, so even an empty
/// one counts, and can be evicted.
pub(crate) const SLOT_OVERHEAD: usize = 256;

/// Finished listings kept at most, however small, so the map stays small.
const MAX_ENTRIES: usize = 1024;

/// Which listing: the directory (device, inode) and the href prefix its links carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DirKey {
    dev: u64,
    ino: u64,
    pub(crate) href_prefix: Box<str>,
}

/// Which version of it: nanosecond mtime (entries added, removed, renamed) and ctime (also
/// permissions, and an mtime set back by `touch -d`/`rsync -t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    pub(crate) fn of(metadata: &Metadata) -> Self {
        Self {
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Whether the version is at least [`SETTLE`] old, so that any later change moves a
    /// timestamp. Any change to a directory sets its ctime to the current time (an mtime
    /// can be set to anything, even ahead, but that sets the ctime too), so the ctime's age
    /// is the one that counts.
    fn settled(self, now: SystemTime) -> bool {
        let (Ok(secs), Ok(nanos)) = (u64::try_from(self.ctime.0), u32::try_from(self.ctime.1))
        else {
            return true; // before 1970: old enough
        };
        let changed = UNIX_EPOCH + Duration::new(secs, nanos);
        now.duration_since(changed).is_ok_and(|age| age >= SETTLE)
    }
}

/// One read of one directory version, and its page once rendered: what every request for
/// that version shares.
#[derive(Debug)]
pub(crate) struct DirListing {
    pub(crate) key: DirKey,
    version: Version,
    /// Settled when first asked for: may be cached, and joined while reading.
    settled: bool,
    pub(crate) scan: Shared<Result<Arc<Snapshot>, Unreadable>>,
    pub(crate) page: Shared<Bytes>,
}

/// The directory could not be read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unreadable;

impl DirListing {
    fn bytes(&self) -> usize {
        // The snapshot is kept (for a later render) until the page exists.
        SLOT_OVERHEAD
            + self.key.href_prefix.len()
            + match self.page.get() {
                Some(page) => page.len(),
                None => match self.scan.get() {
                    Some(Ok(snapshot)) => snapshot.bytes(),
                    _ => 0,
                },
            }
    }
}

/// Everything the listing layer shares between its requests.
#[derive(Debug)]
pub(crate) struct Listings {
    permits: Arc<Semaphore>,
    budget: usize,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    map: HashMap<DirKey, Slot>,
    bytes: usize,
    clock: u64,
}

// Not every listing: there can be a thousand.
impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("listings", &self.map.len())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

struct Slot {
    listing: Arc<DirListing>,
    bytes: usize,
    used: u64,
}

impl Listings {
    pub(crate) fn new(render_limit: usize, budget: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(render_limit.max(1))),
            budget,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The listing of this directory version, joined: a settled version is shared with
    /// every request for it (cached); an unsettled one only with requests whose read has
    /// not begun yet, so no request ever gets entries older than itself.
    pub(crate) fn join(
        self: &Arc<Self>,
        key: DirKey,
        metadata: &Metadata,
        resolved: &Resolved,
    ) -> (Arc<DirListing>, Joined<Result<Arc<Snapshot>, Unreadable>>) {
        let version = Version::of(metadata);
        let mut cache = self.cache();
        cache.clock += 1;
        let now = cache.clock;
        if let Some(slot) = cache.map.get_mut(&key)
            && slot.listing.version == version
        {
            let joined = slot.listing.scan.join(slot.listing.settled);
            if !matches!(joined, Joined::Refused) {
                slot.used = now;
                let listing = slot.listing.clone();
                drop(cache);
                return (listing.clone(), self.started(listing, joined, resolved));
            }
        }
        let listing = Arc::new(DirListing {
            key: key.clone(),
            version,
            settled: version.settled(SystemTime::now()) && exact_dir_times(resolved),
            scan: Shared::new(),
            page: Shared::new(),
        });
        let joined = listing.scan.join(true);
        if let Some(old) = cache.map.insert(
            key,
            Slot {
                listing: listing.clone(),
                bytes: 0,
                used: now,
            },
        ) {
            cache.bytes -= old.bytes;
        }
        drop(cache);
        (listing.clone(), self.started(listing, joined, resolved))
    }

    /// Joins the scan of a listing the caller already holds (after its job was given up).
    pub(crate) fn rejoin(
        self: &Arc<Self>,
        listing: &Arc<DirListing>,
        resolved: &Resolved,
    ) -> Joined<Result<Arc<Snapshot>, Unreadable>> {
        let joined = listing.scan.join(true);
        self.started(listing.clone(), joined, resolved)
    }

    fn started(
        self: &Arc<Self>,
        listing: Arc<DirListing>,
        joined: Joined<Result<Arc<Snapshot>, Unreadable>>,
        resolved: &Resolved,
    ) -> Joined<Result<Arc<Snapshot>, Unreadable>> {
        if let Joined::Start(_) = joined {
            tokio::spawn(self.clone().run_scan(listing, resolved.clone()));
        }
        joined
    }

    /// Joins the page of a scanned listing, starting its render if nobody has.
    pub(crate) fn join_page(
        self: &Arc<Self>,
        listing: &Arc<DirListing>,
        snapshot: &Arc<Snapshot>,
    ) -> Joined<Bytes> {
        let joined = listing.page.join(true);
        if let Joined::Start(_) = joined {
            tokio::spawn(self.clone().run_render(listing.clone(), snapshot.clone()));
        }
        joined
    }

    async fn run_scan(self: Arc<Self>, listing: Arc<DirListing>, resolved: Resolved) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return listing.scan.give_up();
        };
        if !listing.scan.begin() {
            return self.forget(&listing);
        }
        if !listing.settled {
            // Requests from now on must not take this read: it may predate them.
            self.forget(&listing);
        }
        let job = listing.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let snapshot = render::scan(&resolved, &job.key.href_prefix, || !job.scan.abandoned());
            // Changed while being read: serve this read, but never cache it.
            let unchanged = match resolved.entry() {
                httpserve_core::Entry::Directory { dir, .. } => {
                    dir.metadata().is_ok_and(|m| Version::of(&m) == job.version)
                }
                _ => false,
            };
            (snapshot, unchanged)
        })
        .await;
        match scanned {
            Ok((Ok(snapshot), unchanged)) => {
                // A page that shows where links point can change without the directory
                // changing: served to the requests that asked, never cached.
                let cacheable = unchanged && !snapshot.has_links;
                listing.scan.finish(Ok(Arc::new(snapshot)));
                if cacheable {
                    self.account(&listing);
                } else {
                    self.forget(&listing);
                }
            }
            Ok((Err(ScanError::Unreadable), _)) => {
                listing.scan.finish(Err(Unreadable));
                self.forget(&listing);
            }
            Ok((Err(ScanError::Stopped), _)) | Err(_) => {
                listing.scan.give_up();
                self.forget(&listing);
            }
        }
    }

    async fn run_render(self: Arc<Self>, listing: Arc<DirListing>, snapshot: Arc<Snapshot>) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return listing.page.give_up();
        };
        if !listing.page.begin() {
            return;
        }
        let job = listing.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            render::render(&snapshot, &job.key.href_prefix, || !job.page.abandoned())
                .map(|page| (page, snapshot.emptied()))
        })
        .await;
        match rendered {
            Ok(Ok((page, emptied))) => {
                listing.page.finish(page);
                // The entries are not needed any more: a later request only needs the length.
                listing.scan.finish(Ok(Arc::new(emptied)));
                self.account(&listing);
            }
            Ok(Err(render::Stopped)) | Err(_) => listing.page.give_up(),
        }
    }

    /// Removes a listing from the cache (if it is still the one there).
    fn forget(&self, listing: &Arc<DirListing>) {
        let mut cache = self.cache();
        if cache
            .map
            .get(&listing.key)
            .is_some_and(|slot| Arc::ptr_eq(&slot.listing, listing))
            && let Some(slot) = cache.map.remove(&listing.key)
        {
            cache.bytes -= slot.bytes;
        }
    }

    /// Counts a settled listing's memory against the budget, evicting the least recently
    /// used ones past it; one that alone exceeds the budget is served but not kept.
    fn account(&self, listing: &Arc<DirListing>) {
        let bytes = listing.bytes();
        let mut cache = self.cache();
        let Some(slot) = cache
            .map
            .get_mut(&listing.key)
            .filter(|slot| Arc::ptr_eq(&slot.listing, listing))
        else {
            return;
        };
        let old = std::mem::replace(&mut slot.bytes, bytes);
        cache.bytes = cache.bytes - old + bytes;
        if bytes > self.budget {
            cache.map.remove(&listing.key);
            cache.bytes -= bytes;
            return;
        }
        while cache.bytes > self.budget || cache.map.len() > MAX_ENTRIES {
            let Some(oldest) = cache
                .map
                .iter()
                .filter(|(key, slot)| **key != listing.key && slot.bytes > 0)
                .min_by_key(|(_, slot)| slot.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(slot) = cache.map.remove(&oldest) {
                cache.bytes -= slot.bytes;
            }
        }
    }

    /// Memory held by cached listings, and how many of them have a rendered page (for
    /// tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> (usize, usize) {
        let cache = self.cache();
        let pages = cache
            .map
            .values()
            .filter(|slot| slot.listing.page.get().is_some())
            .count();
        (cache.bytes, pages)
    }
}

impl DirKey {
    pub(crate) fn of(metadata: &Metadata, href_prefix: Box<str>) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            href_prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_systems_with_exact_directory_times_are_cached() {
        let d = tempfile::tempdir().unwrap();
        let local = Resolved::resolve(&httpserve_core::Root::new(d.path()), "/");
        let proc = Resolved::resolve(&httpserve_core::Root::new("/proc"), "/");
        // The test's temporary directory is on ext4, tmpfs or the like.
        assert!(exact_dir_times(&local));
        // procfs never moves a directory's times.
        assert!(!exact_dir_times(&proc));
    }

    #[test]
    fn a_version_settles_by_its_ctime_whatever_its_mtime() {
        let now = SystemTime::now();
        let secs = |t: SystemTime| i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        let at = |mtime: SystemTime, ctime: SystemTime| Version {
            mtime: (secs(mtime).unwrap(), 0),
            ctime: (secs(ctime).unwrap(), 0),
        };
        let hour = Duration::from_secs(3600);
        assert!(at(now - hour, now - hour).settled(now));
        // Changed a moment ago, whatever the mtime says (`touch -d` sets the ctime too).
        assert!(!at(now - hour, now).settled(now));
        assert!(!at(now + hour, now).settled(now));
        // An mtime set ahead an hour ago: the ctime says nothing changed since.
        assert!(at(now + hour, now - hour).settled(now));
        // A ctime ahead of the clock (it went back) is never trusted.
        assert!(!at(now, now + hour).settled(now));
    }
}
