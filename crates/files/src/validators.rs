//! Header values that depend only on a file's version, built once and reused.

use http::HeaderValue;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// A file version: device, inode, mtime (ns) and size. Any change to the file's bytes
/// that keeps all four is indistinguishable to every HTTP validator too, so a value cached
/// under this key is never staler than the `ETag` itself.
type VersionKey = (u64, u64, i64, i64, u64);

/// Entries kept per worker thread before the cache starts over.
const CACHE_LIMIT: usize = 1024;

/// `ETag`, `Last-Modified` and whole-file `Content-Length` of one file version.
#[derive(Debug, Clone)]
pub(crate) struct Validators {
    pub(crate) etag: HeaderValue,
    pub(crate) last_modified: Option<HeaderValue>,
    pub(crate) content_length: HeaderValue,
}

// Fx hashing, not SipHash: the keys come from files on disk, not from requests, so there is
// no flooding to resist, and SipHash of the five numbers cost more than the rest of the lookup.
thread_local! {
    static VALIDATORS: RefCell<FxHashMap<VersionKey, Validators>> = RefCell::default();
    static CONTENT_TYPES: RefCell<FxHashMap<Box<[u8]>, &'static str>> = RefCell::default();
}

/// The validators of the file `metadata` describes, from this thread's cache when this
/// version was seen before.
pub(crate) fn validators(metadata: &Metadata) -> Validators {
    let key = (
        metadata.dev(),
        metadata.ino(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.len(),
    );
    VALIDATORS.with(|cache| {
        if let Some(found) = cache.borrow().get(&key) {
            return found.clone();
        }
        let built = build(metadata);
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, built.clone());
        built
    })
}

fn build(metadata: &Metadata) -> Validators {
    let modified = metadata.modified().ok();
    let last_modified =
        modified.and_then(|m| HeaderValue::try_from(httpdate::fmt_http_date(m)).ok());
    Validators {
        etag: etag_value(metadata),
        last_modified,
        content_length: HeaderValue::from(metadata.len()),
    }
}

/// A strong validator from mtime and size, in the format tower-http's `ServeDir` uses:
/// `"<secs hex>.<nanos hex, 8 digits>-<size hex>"`.
pub(crate) fn etag_value(metadata: &Metadata) -> HeaderValue {
    let (secs, nanos) = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
    let text = format!("\"{secs:x}.{nanos:08x}-{:x}\"", metadata.len());
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// [`crate::content_type`], memoised per extension on this thread.
pub(crate) fn cached_content_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension() else {
        return "application/octet-stream";
    };
    let ext = ext.as_encoded_bytes();
    CONTENT_TYPES.with(|cache| {
        if let Some(&found) = cache.borrow().get(ext) {
            return found;
        }
        let mime = crate::content_type(path);
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(ext.into(), mime);
        mime
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_gets_new_validators_at_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let first = validators(&std::fs::metadata(&path).unwrap());
        assert_eq!(
            validators(&std::fs::metadata(&path).unwrap()).etag,
            first.etag
        );
        // Same size, rewritten in place: the mtime (ns) moves, so the key does too.
        std::fs::write(&path, "two").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        file.set_modified(later).unwrap();
        let second = validators(&std::fs::metadata(&path).unwrap());
        assert_ne!(second.etag, first.etag);
        assert_ne!(second.last_modified, first.last_modified);
    }

    #[test]
    fn content_types_are_the_uncached_ones() {
        for name in ["a.txt", "b.TXT", "c.Z", "d.z", "noext", "e.gz", "f.html"] {
            let path = Path::new(name);
            assert_eq!(
                cached_content_type(path),
                crate::content_type(path),
                "{name}"
            );
            assert_eq!(
                cached_content_type(path),
                crate::content_type(path),
                "{name} again"
            );
        }
    }
}
