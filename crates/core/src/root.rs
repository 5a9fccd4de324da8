//! The served directory and the policies every lookup below it obeys.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a lookup does with symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkPolicy {
    /// Follow every link, also out of the root (Python's behaviour, and the default).
    #[default]
    Follow,
    /// Follow relative links only while the path stays below the root, checked by the
    /// kernel during the lookup (`openat2` with `RESOLVE_BENEATH`), so no rename race can
    /// escape. Absolute links are refused even when they point inside. Without `openat2`
    /// (Linux < 5.6) this falls back to [`SymlinkPolicy::Never`].
    WithinRoot,
    /// Never follow a link: links are neither served nor listed.
    Never,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    symlinks: SymlinkPolicy,
    hide_dotfiles: bool,
    /// The root opened once (`O_PATH`), for the confined lookups.
    dir: Option<OwnedFd>,
    /// The root with symlinks resolved, to judge where a link really leads.
    canonical: Option<PathBuf>,
}

/// The directory served, with its symlink and dot-file policies. Cheap to clone; give the
/// same `Root` to every layer so they share lookups.
#[derive(Debug, Clone)]
pub struct Root(Arc<Inner>);

impl Root {
    /// Serves `path`, following symlinks and showing dot-files, as Python does.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(Arc::new(Inner {
            path: path.into(),
            symlinks: SymlinkPolicy::Follow,
            hide_dotfiles: false,
            dir: None,
            canonical: None,
        }))
    }

    /// Sets the symlink policy.
    pub fn symlinks(self, policy: SymlinkPolicy) -> Self {
        let inner = self.into_inner();
        let dir = match policy {
            SymlinkPolicy::Follow => None,
            _ => open_root(&inner.path).ok(),
        };
        Self(Arc::new(Inner {
            symlinks: policy,
            dir,
            ..inner
        }))
    }

    /// Hides dot-files: any path with a segment starting with `.` is neither listed nor
    /// served (a `404`), whatever is below it.
    pub fn hide_dotfiles(self, hide: bool) -> Self {
        let inner = self.into_inner();
        let canonical = if hide {
            inner.path.canonicalize().ok()
        } else {
            None
        };
        Self(Arc::new(Inner {
            hide_dotfiles: hide,
            canonical,
            ..inner
        }))
    }

    fn into_inner(self) -> Inner {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                path: shared.path.clone(),
                symlinks: shared.symlinks,
                hide_dotfiles: shared.hide_dotfiles,
                dir: shared.dir.as_ref().and_then(|fd| fd.try_clone().ok()),
                canonical: shared.canonical.clone(),
            },
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The symlink policy.
    pub fn symlink_policy(&self) -> SymlinkPolicy {
        self.0.symlinks
    }

    /// Whether dot-files are hidden.
    pub fn hides_dotfiles(&self) -> bool {
        self.0.hide_dotfiles
    }

    /// Whether `real` (a path with symlinks resolved) is a dot-file for this root: a
    /// segment below the root starting with `.`, or, for a place outside the root, any
    /// segment starting with `.`. So a link with an ordinary name cannot expose `.env`.
    pub fn is_hidden_target(&self, real: &Path) -> bool {
        if !self.0.hide_dotfiles {
            return false;
        }
        let below = self
            .0
            .canonical
            .as_deref()
            .and_then(|root| real.strip_prefix(root).ok())
            .unwrap_or(real);
        below
            .components()
            .any(|c| c.as_os_str().as_encoded_bytes().first() == Some(&b'.'))
    }

    /// Whether the open `file` is really a dot-file (see [`Root::is_hidden_target`]).
    fn opened_hidden(&self, file: &File) -> bool {
        use std::os::fd::AsRawFd;
        if !self.0.hide_dotfiles {
            return false;
        }
        match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            Ok(real) => self.is_hidden_target(&real),
            // Without /proc we cannot tell: refuse rather than risk it.
            Err(_) => true,
        }
    }

    /// Whether two roots are the same directory with the same policies.
    pub fn same_as(&self, other: &Root) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.path == other.0.path
                && self.0.symlinks == other.0.symlinks
                && self.0.hide_dotfiles == other.0.hide_dotfiles)
    }

    /// Opens `relative` (below the root; empty for the root itself) for reading the way
    /// every lookup does: under the symlink policy, and, when dot-files are hidden,
    /// `NotFound` for a path with a dot segment or whose real target is a dot-file.
    pub fn open_visible(&self, relative: &Path) -> io::Result<File> {
        self.visible(relative, self.open(relative)?)
    }

    /// [`Root::open_visible`] with `O_PATH`: no read permission needed, nothing can be
    /// read; tells an unreadable directory from a missing path.
    pub(crate) fn open_visible_path_only(&self, relative: &Path) -> io::Result<File> {
        self.visible(relative, self.open_path_only(relative)?)
    }

    fn visible(&self, relative: &Path, file: File) -> io::Result<File> {
        let dot_segment = || {
            relative
                .components()
                .any(|c| c.as_os_str().as_encoded_bytes().first() == Some(&b'.'))
        };
        if self.0.hide_dotfiles && (dot_segment() || self.opened_hidden(&file)) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "hidden"));
        }
        Ok(file)
    }

    /// Opens `relative` (below the root; empty for the root itself) for reading, under the
    /// symlink policy. `O_NONBLOCK` keeps a FIFO from blocking the open.
    fn open(&self, relative: &Path) -> io::Result<File> {
        self.open_with(relative, false)
    }

    /// Opens `relative` with `O_PATH`: no read permission needed, nothing can be read; used
    /// to tell an unreadable directory from a missing path.
    fn open_path_only(&self, relative: &Path) -> io::Result<File> {
        self.open_with(relative, true)
    }

    fn open_with(&self, relative: &Path, path_only: bool) -> io::Result<File> {
        if path_only && self.0.symlinks == SymlinkPolicy::Follow {
            use rustix::fs::{Mode, OFlags, open};
            let flags = OFlags::PATH | OFlags::CLOEXEC;
            return Ok(File::from(open(
                self.0.path.join(relative),
                flags,
                Mode::empty(),
            )?));
        }
        match self.0.symlinks {
            SymlinkPolicy::Follow => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(self.0.path.join(relative))
            }
            policy => {
                let dir = self.0.dir.as_ref().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "root cannot be opened")
                })?;
                open_confined(dir, relative, policy, path_only).map(File::from)
            }
        }
    }
}

impl From<&Path> for Root {
    fn from(path: &Path) -> Self {
        Self::new(path)
    }
}

impl From<PathBuf> for Root {
    fn from(path: PathBuf) -> Self {
        Self::new(path)
    }
}

impl From<&PathBuf> for Root {
    fn from(path: &PathBuf) -> Self {
        Self::new(path.clone())
    }
}

impl From<&str> for Root {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

impl From<String> for Root {
    fn from(path: String) -> Self {
        Self::new(path)
    }
}

impl From<&String> for Root {
    fn from(path: &String) -> Self {
        Self::new(path)
    }
}

impl From<&Root> for Root {
    fn from(root: &Root) -> Self {
        root.clone()
    }
}

fn open_root(path: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, open};
    Ok(open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn read_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY
}

/// Opens below `dir` so that no path, symlink or concurrent rename can leave it:
/// `openat2(RESOLVE_BENEATH)`, or a component-by-component `O_NOFOLLOW` walk where the
/// kernel has no `openat2`.
fn open_confined(
    dir: &OwnedFd,
    relative: &Path,
    policy: SymlinkPolicy,
    path_only: bool,
) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, ResolveFlags, openat2};
    let target: &Path = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if policy == SymlinkPolicy::Never {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    let flags = if path_only {
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC
    } else {
        read_flags()
    };
    match openat2(dir, target, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        // No openat2 here (old kernel, or a seccomp filter): walk without following links.
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            walk_nofollow(dir, relative, path_only)
        }
        Err(e) => Err(e.into()),
    }
}

fn walk_nofollow(dir: &OwnedFd, relative: &Path, path_only: bool) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, openat};
    let components: Vec<_> = relative.components().collect();
    let mut current = rustix::io::dup(dir)?;
    for (i, component) in components.iter().enumerate() {
        let std::path::Component::Normal(name) = component else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not below the root",
            ));
        };
        let last = i + 1 == components.len();
        let flags = if last && !path_only {
            read_flags() | OFlags::NOFOLLOW
        } else {
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
        };
        current = openat(&current, *name, flags, Mode::empty())?;
    }
    if components.is_empty() && !path_only {
        current = openat(&current, ".", read_flags(), Mode::empty())?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), "secret").unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "f").unwrap();
        symlink(outer.path().join("secret"), root.join("out")).unwrap();
        symlink("sub/f", root.join("in")).unwrap();
        symlink(root.join("sub/f"), root.join("abs-in")).unwrap();
        symlink("../secret", root.join("rel-out")).unwrap();
        symlink(outer.path(), root.join("outdir")).unwrap();
        (outer, root)
    }

    fn opens(root: &Root, rel: &str) -> bool {
        root.open(Path::new(rel)).is_ok()
    }

    #[test]
    fn follow_is_pythons_default() {
        let (_o, path) = fixture();
        let root = Root::new(&path);
        assert!(opens(&root, "out"));
        assert!(opens(&root, "in"));
        assert!(opens(&root, "outdir/secret"));
    }

    #[test]
    fn within_root_allows_inner_links_only() {
        let (_o, path) = fixture();
        let root = Root::new(&path).symlinks(SymlinkPolicy::WithinRoot);
        assert!(opens(&root, ""));
        assert!(opens(&root, "sub/f"));
        assert!(opens(&root, "in"));
        // RESOLVE_BENEATH refuses absolute links even when they point inside.
        assert!(!opens(&root, "abs-in"));
        assert!(!opens(&root, "out"));
        assert!(!opens(&root, "rel-out"));
        assert!(!opens(&root, "outdir/secret"));
        assert!(!opens(&root, "sub/../../secret"));
    }

    #[test]
    fn never_follows_no_link() {
        let (_o, path) = fixture();
        let root = Root::new(&path).symlinks(SymlinkPolicy::Never);
        assert!(opens(&root, "sub/f"));
        assert!(!opens(&root, "in"));
        assert!(!opens(&root, "out"));
        let walked = walk_nofollow(root.0.dir.as_ref().unwrap(), Path::new("in"), false);
        assert!(walked.is_err());
        assert!(walk_nofollow(root.0.dir.as_ref().unwrap(), Path::new("sub/f"), false).is_ok());
        assert!(
            walk_nofollow(
                root.0.dir.as_ref().unwrap(),
                Path::new("outdir/secret"),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn roots_compare_by_directory_and_policy() {
        let a = Root::new("/srv");
        assert!(a.same_as(&a.clone()));
        assert!(a.same_as(&Root::new("/srv")));
        assert!(!a.same_as(&Root::new("/srv").hide_dotfiles(true)));
        assert!(!a.same_as(&Root::new("/other")));
    }
}
