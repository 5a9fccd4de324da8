//! One filesystem lookup per request, shared by every layer through request extensions.

use crate::path::translate_path;
use http::Request;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a request path turned out to be on disk.
///
/// Built by [`Resolved::lookup`] with one `open` and one `fstat`; the open file is kept so
/// the layer that serves the bytes never opens the path again.
#[derive(Debug)]
pub enum Entry {
    /// A regular file, open for reading.
    File {
        /// The open file.
        file: File,
        /// Its metadata, from `fstat` on the open descriptor.
        metadata: Metadata,
    },
    /// A directory.
    Directory {
        /// Its metadata (the listing's `Last-Modified` comes from its mtime).
        metadata: Metadata,
    },
    /// Something that is neither a regular file nor a directory (FIFO, socket, device):
    /// never read, so it can never hang a worker.
    Special,
    /// The path could not be opened (missing, no permission, not a directory, …).
    Missing(io::ErrorKind),
    /// The request path cannot name a file at all (it holds a NUL byte).
    Invalid,
}

#[derive(Debug)]
struct Inner {
    root: Arc<Path>,
    uri_path: Box<str>,
    fs_path: PathBuf,
    trailing_slash: bool,
    entry: Entry,
}

/// The outcome of looking a request path up below a root, cheap to clone and stored in
/// the request's extensions so that later layers reuse it.
#[derive(Debug, Clone)]
pub struct Resolved(Arc<Inner>);

impl Resolved {
    /// Returns the lookup of `req`'s path below `root`, reusing the one an earlier layer
    /// stored in the request (same root, same path) or making it and storing it.
    ///
    /// The lookup is an `open(O_RDONLY|O_NONBLOCK)` plus `fstat`, done on the calling
    /// thread: both are metadata operations that the kernel answers from its caches for a
    /// local filesystem, and a blocking-pool round trip would cost more than the calls.
    /// `O_NONBLOCK` keeps a FIFO from blocking the open.
    pub fn lookup<B>(req: &mut Request<B>, root: &Arc<Path>) -> Self {
        if let Some(found) = Self::cached(req, root) {
            return found;
        }
        let resolved = Self::resolve(root, req.uri().path());
        req.extensions_mut().insert(resolved.clone());
        resolved
    }

    /// Returns the lookup stored in `req` for this root and the request's current path.
    pub fn cached<B>(req: &Request<B>, root: &Arc<Path>) -> Option<Self> {
        req.extensions()
            .get::<Resolved>()
            .filter(|r| r.0.uri_path.as_ref() == req.uri().path() && *r.0.root == **root)
            .cloned()
    }

    /// Looks `uri_path` up below `root` without consulting any cache.
    pub fn resolve(root: &Arc<Path>, uri_path: &str) -> Self {
        match translate_path(root, uri_path) {
            Some(t) => Self::open(root, uri_path, t.fs_path, t.trailing_slash),
            None => Self(Arc::new(Inner {
                root: root.clone(),
                uri_path: uri_path.into(),
                fs_path: root.to_path_buf(),
                trailing_slash: false,
                entry: Entry::Invalid,
            })),
        }
    }

    /// Opens `fs_path` and records it as the lookup of `uri_path` below `root`.
    ///
    /// The index layer uses this to swap a directory for its `index.html`.
    pub fn open(root: &Arc<Path>, uri_path: &str, fs_path: PathBuf, trailing_slash: bool) -> Self {
        let entry = open_entry(&fs_path);
        Self(Arc::new(Inner {
            root: root.clone(),
            uri_path: uri_path.into(),
            fs_path,
            trailing_slash,
            entry,
        }))
    }

    /// Stores this lookup in `req`'s extensions.
    pub fn store_in<B>(self, req: &mut Request<B>) {
        req.extensions_mut().insert(self);
    }

    /// What the path is on disk.
    pub fn entry(&self) -> &Entry {
        &self.0.entry
    }

    /// The filesystem path the request maps to.
    pub fn fs_path(&self) -> &Path {
        &self.0.fs_path
    }

    /// The request path this lookup was made for.
    pub fn uri_path(&self) -> &str {
        &self.0.uri_path
    }

    /// Whether the decoded request path ended in `/`.
    pub fn trailing_slash(&self) -> bool {
        self.0.trailing_slash
    }

    /// Whether the path is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.0.entry, Entry::Directory { .. })
    }
}

fn open_entry(fs_path: &Path) -> Entry {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fs_path)
    {
        Ok(file) => file,
        Err(e) => return Entry::Missing(e.kind()),
    };
    match file.metadata() {
        Ok(metadata) if metadata.is_file() => Entry::File { file, metadata },
        Ok(metadata) if metadata.is_dir() => Entry::Directory { metadata },
        Ok(_) => Entry::Special,
        Err(e) => Entry::Missing(e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Arc<Path>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "hi").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let root: Arc<Path> = dir.path().into();
        (dir, root)
    }

    #[test]
    fn classifies_files_dirs_and_missing() {
        let (_d, root) = root();
        assert!(
            matches!(Resolved::resolve(&root, "/f.txt").entry(), Entry::File { metadata, .. } if metadata.len() == 2)
        );
        assert!(Resolved::resolve(&root, "/sub").is_dir());
        assert!(Resolved::resolve(&root, "/").is_dir());
        assert!(matches!(
            Resolved::resolve(&root, "/nope").entry(),
            Entry::Missing(io::ErrorKind::NotFound)
        ));
        assert!(matches!(
            Resolved::resolve(&root, "/a%00").entry(),
            Entry::Invalid
        ));
    }

    #[test]
    fn fifo_is_special_and_does_not_block() {
        let (d, root) = root();
        let fifo = d.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(
            Resolved::resolve(&root, "/pipe").entry(),
            Entry::Special
        ));
    }

    #[test]
    fn lookup_is_cached_per_path_and_root() {
        let (_d, root) = root();
        let mut req = Request::get("/f.txt").body(()).unwrap();
        let first = Resolved::lookup(&mut req, &root);
        let again = Resolved::lookup(&mut req, &root);
        assert!(Arc::ptr_eq(&first.0, &again.0));
        // Another path in the same request (as after an internal rewrite) is looked up anew.
        *req.uri_mut() = "/sub/".parse().unwrap();
        let other = Resolved::lookup(&mut req, &root);
        assert!(other.is_dir());
        // Another root never reuses it.
        let other_root: Arc<Path> = Path::new("/nonexistent-root").into();
        assert!(Resolved::cached(&req, &other_root).is_none());
    }
}
