//! One filesystem lookup per request, shared by every layer through request extensions.

use crate::path::translate_relative;
use crate::root::Root;
use http::Request;
use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a request path turned out to be on disk.
///
/// Built by [`Resolved::lookup`] with one `open` and one `fstat`; the open file is kept so
/// the layer that serves the bytes (or lists the directory) never opens the path again.
#[derive(Debug)]
pub enum Entry {
    /// A regular file, open for reading.
    File {
        /// The open file.
        file: File,
        /// Its metadata, from `fstat` on the open descriptor.
        metadata: Metadata,
    },
    /// A directory, open for reading its entries.
    Directory {
        /// The open directory.
        dir: File,
        /// Its metadata (the listing's `Last-Modified` comes from its mtime).
        metadata: Metadata,
    },
    /// Something that is neither a regular file nor a directory (FIFO, socket, device):
    /// never read, so it can never hang a worker.
    Special,
    /// The path could not be opened (missing, no permission, not a directory, a symlink
    /// the policy refuses, a hidden dot-file, …).
    Missing(io::ErrorKind),
    /// The request path cannot name a file at all (it holds a NUL byte).
    Invalid,
}

impl Entry {
    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        matches!(self, Entry::File { .. })
    }
}

#[derive(Debug)]
struct Inner {
    root: Root,
    uri_path: Box<str>,
    relative: PathBuf,
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
    pub fn lookup<B>(req: &mut Request<B>, root: &Root) -> Self {
        if let Some(found) = Self::cached(req, root) {
            return found;
        }
        let resolved = Self::resolve(root, req.uri().path());
        req.extensions_mut().insert(resolved.clone());
        resolved
    }

    /// Returns the lookup stored in `req` for this root and the request's current path.
    pub fn cached<B>(req: &Request<B>, root: &Root) -> Option<Self> {
        req.extensions()
            .get::<Resolved>()
            .filter(|r| r.0.uri_path.as_ref() == req.uri().path() && r.0.root.same_as(root))
            .cloned()
    }

    /// Looks `uri_path` up below `root` without consulting any cache.
    pub fn resolve(root: &Root, uri_path: &str) -> Self {
        let Some((relative, trailing_slash)) = translate_relative(uri_path) else {
            return Self::with_entry(root, uri_path, PathBuf::new(), false, Entry::Invalid);
        };
        Self::open_relative(root, uri_path, relative, trailing_slash)
    }

    /// Looks up `name` inside the directory `self` names, recording it as the lookup of
    /// `uri_path` (the index layer uses this to swap a directory for its `index.html`).
    pub fn child(&self, name: &str, uri_path: &str) -> Self {
        Self::open_relative(&self.0.root, uri_path, self.0.relative.join(name), false)
    }

    fn open_relative(root: &Root, uri_path: &str, relative: PathBuf, trailing_slash: bool) -> Self {
        let entry = open_entry(root, &relative);
        Self::with_entry(root, uri_path, relative, trailing_slash, entry)
    }

    fn with_entry(
        root: &Root,
        uri_path: &str,
        relative: PathBuf,
        trailing_slash: bool,
        entry: Entry,
    ) -> Self {
        Self(Arc::new(Inner {
            root: root.clone(),
            uri_path: uri_path.into(),
            relative,
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
    pub fn fs_path(&self) -> PathBuf {
        self.0.root.path().join(&self.0.relative)
    }

    /// The path below the root (empty for the root itself).
    pub fn relative_path(&self) -> &Path {
        &self.0.relative
    }

    /// The root it was looked up below.
    pub fn root(&self) -> &Root {
        &self.0.root
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

fn open_entry(root: &Root, relative: &Path) -> Entry {
    let file = match root.open_visible(relative) {
        Ok(file) => file,
        // A directory without read permission is still a directory (Python redirects to
        // it and answers `404 No permission to list directory`): open it `O_PATH`, so its
        // listing fails to read rather than claiming it does not exist.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return match root
                .open_visible_path_only(relative)
                .and_then(|f| Ok((f.metadata()?, f)))
            {
                Ok((metadata, dir)) if metadata.is_dir() => Entry::Directory { dir, metadata },
                _ => Entry::Missing(e.kind()),
            };
        }
        Err(e) => return Entry::Missing(e.kind()),
    };
    match file.metadata() {
        Ok(metadata) if metadata.is_file() => Entry::File { file, metadata },
        Ok(metadata) if metadata.is_dir() => Entry::Directory {
            dir: file,
            metadata,
        },
        Ok(_) => Entry::Special,
        Err(e) => Entry::Missing(e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SymlinkPolicy;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "hi").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), "secret").unwrap();
        std::fs::write(dir.path().join(".env"), "secret").unwrap();
        let root = Root::new(dir.path());
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
        assert!(matches!(
            Resolved::resolve(&root, "/.env").entry(),
            Entry::File { .. }
        ));
    }

    #[test]
    fn hidden_dotfiles_are_missing_at_any_depth() {
        let (_d, root) = root();
        let root = root.hide_dotfiles(true);
        for path in [
            "/.env",
            "/.git/config",
            "/.git/",
            "/%2egit/config",
            "/sub/../.env",
        ] {
            assert!(
                matches!(Resolved::resolve(&root, path).entry(), Entry::Missing(_)),
                "{path}"
            );
        }
        assert!(Resolved::resolve(&root, "/f.txt").entry().is_file());
    }

    #[test]
    fn fifo_is_special_and_does_not_block() {
        let (d, root) = root();
        let status = std::process::Command::new("mkfifo")
            .arg(d.path().join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(
            Resolved::resolve(&root, "/pipe").entry(),
            Entry::Special
        ));
        let confined = root.symlinks(SymlinkPolicy::WithinRoot);
        assert!(matches!(
            Resolved::resolve(&confined, "/pipe").entry(),
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
        assert!(Resolved::cached(&req, &Root::new("/nonexistent-root")).is_none());
        // A child lookup reuses the directory's place below the root.
        assert!(
            Resolved::resolve(&root, "/")
                .child("f.txt", "/f.txt")
                .entry()
                .is_file()
        );
    }
}
