//! Which script a request names, the way Python's `CGIHTTPRequestHandler` finds it.

use httpserve_core::{Root, resolve_dot_segments};
use percent_encoding::percent_decode_str;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A request path after Python's `_url_collapse_path`: percent-decoded, `.`/`..`/empty
/// segments resolved (never above the root), and whether it ended in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collapsed {
    pub(crate) segments: Vec<Vec<u8>>,
    pub(crate) trailing_slash: bool,
}

/// Collapses a request path (no query). The query is taken from the raw URI instead, so
/// an encoded `%3F` stays part of the path (Python turns it into a query separator).
pub(crate) fn collapse(uri_path: &str) -> Collapsed {
    let decoded: Vec<u8> = percent_decode_str(uri_path).collect();
    // Python's rule differs from `translate_path`'s here: a last segment of `.` or `..`
    // counts as a trailing slash too.
    let last = decoded.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let trailing_slash = matches!(last, b"" | b"." | b"..");
    let segments = resolve_dot_segments(&decoded)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    Collapsed {
        segments,
        trailing_slash,
    }
}

/// Where a CGI request points, before the filesystem is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The segments of the CGI directory (possibly nested) holding the script.
    pub(crate) dir: Vec<Vec<u8>>,
    /// The script's file name (empty for `/cgi-bin/`).
    pub(crate) script: Vec<u8>,
    /// The decoded extra path after the script, `""` or starting with `/`.
    pub(crate) path_info: Vec<u8>,
}

/// Splits a collapsed path into CGI directory, script and PATH_INFO when it lies in one
/// of `directories` (each like `/cgi-bin`; top-level or nested, case-sensitive, and the
/// path must continue after it with a `/`, so `/cgi-bin` itself is not CGI). The
/// directory walk descends into existing subdirectories as Python does (bpo-21323).
/// `directories` empty means every path is CGI (a service mounted on a script directory).
pub(crate) fn target(
    collapsed: &Collapsed,
    directories: &[Vec<Vec<u8>>],
    root: &Path,
) -> Option<Target> {
    let segs = &collapsed.segments;
    let dir_len = if directories.is_empty() {
        0
    } else {
        directories
            .iter()
            .filter(|dir| {
                segs.starts_with(dir)
                    && (segs.len() > dir.len()
                        || (segs.len() == dir.len() && collapsed.trailing_slash))
            })
            .map(Vec::len)
            .min()?
    };
    let mut dir: Vec<Vec<u8>> = segs[..dir_len].to_vec();
    let mut rest: &[Vec<u8>] = &segs[dir_len..];
    // Descend while the next segment is a directory and something follows it.
    while let Some((first, tail)) = rest.split_first() {
        if tail.is_empty() && !collapsed.trailing_slash {
            break;
        }
        if !fs_path(root, &dir, first).is_dir() {
            break;
        }
        dir.push(first.clone());
        rest = tail;
    }
    let (script, path_info) = match rest.split_first() {
        None => (Vec::new(), Vec::new()),
        Some((script, tail)) => {
            let mut info = Vec::new();
            for seg in tail {
                info.push(b'/');
                info.extend_from_slice(seg);
            }
            if collapsed.trailing_slash {
                info.push(b'/');
            }
            (script.clone(), info)
        }
    };
    Some(Target {
        dir,
        script,
        path_info,
    })
}

/// `root/dir…/name` on disk.
pub(crate) fn fs_path(root: &Path, dir: &[Vec<u8>], name: &[u8]) -> PathBuf {
    let mut path = root.to_path_buf();
    for seg in dir {
        path.push(OsStr::from_bytes(seg));
    }
    if !name.is_empty() {
        path.push(OsStr::from_bytes(name));
    }
    path
}

/// The URL path of the script: `/dir…/script`, decoded, as SCRIPT_NAME wants it.
pub(crate) fn script_name(dir: &[Vec<u8>], script: &[u8]) -> Vec<u8> {
    let mut name = Vec::new();
    for seg in dir {
        name.push(b'/');
        name.extend_from_slice(seg);
    }
    name.push(b'/');
    name.extend_from_slice(script);
    name
}

/// What the filesystem says about a target script.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScriptFile {
    /// Executable: run it directly.
    Executable(PathBuf),
    /// A non-executable `.py`: run it with the interpreter.
    Python(PathBuf),
    /// Missing, or a path the root's policies refuse (a link out, a dot-file).
    Missing,
    /// Exists but is not a regular file (a directory, for `/cgi-bin/`).
    NotAFile,
    /// A regular file without execute permission.
    NotExecutable,
    /// Executable, but neither a `#!` script nor an ELF binary: `execvp` would hand it to
    /// `/bin/sh` (its ENOEXEC fallback), so it is refused.
    NotAProgram,
}

/// Classifies the script at `relative` below `root` with one lookup: the same
/// policy-aware open as for files, `fstat` and the first bytes from that descriptor.
pub(crate) fn script_file(root: &Root, relative: &Path, python_allowed: bool) -> ScriptFile {
    let file = match root.open_visible(relative) {
        Ok(file) => file,
        // Exists, but this server may not read it: not something it can run.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return ScriptFile::NotExecutable;
        }
        Err(_) => return ScriptFile::Missing,
    };
    let Ok(meta) = file.metadata() else {
        return ScriptFile::Missing;
    };
    if !meta.is_file() {
        return ScriptFile::NotAFile;
    }
    let path = root.path().join(relative);
    if meta.permissions().mode() & 0o111 != 0 {
        let mut magic = [0u8; 4];
        let n = file.read_at(&mut magic, 0).unwrap_or(0);
        return if magic[..n].starts_with(b"#!") || magic[..n] == *b"\x7fELF" {
            ScriptFile::Executable(path)
        } else {
            ScriptFile::NotAProgram
        };
    }
    let is_py = path.extension().is_some_and(|e| e == "py" || e == "pyw");
    if is_py && python_allowed {
        ScriptFile::Python(path)
    } else {
        ScriptFile::NotExecutable
    }
}

/// `PATH_TRANSLATED`: the decoded PATH_INFO mapped below `root` like a static path
/// (no second percent-decoding; `..` never climbs above `root`).
pub(crate) fn translated(root: &Path, path_info: &[u8]) -> PathBuf {
    let mut path = root.to_path_buf();
    for seg in resolve_dot_segments(path_info) {
        path.push(OsStr::from_bytes(seg));
    }
    // Python keeps a trailing slash of PATH_INFO in PATH_TRANSLATED.
    if path_info.ends_with(b"/") {
        path.as_mut_os_string().push("/");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> (Vec<String>, bool) {
        let c = collapse(p);
        (
            c.segments
                .iter()
                .map(|s| String::from_utf8(s.clone()).unwrap())
                .collect(),
            c.trailing_slash,
        )
    }

    #[test]
    fn collapse_matches_pythons_vectors() {
        // test_url_collapse_path in CPython, in segment form.
        assert_eq!(c("/"), (vec![], true));
        assert_eq!(c(""), (vec![], true));
        assert_eq!(
            c("/a/b/c/../d"),
            (vec!["a".into(), "b".into(), "d".into()], false)
        );
        assert_eq!(c("/a/b/c/../d/e/../../../../f"), (vec!["f".into()], false));
        assert_eq!(c("/a/b/"), (vec!["a".into(), "b".into()], true));
        assert_eq!(c("/a/b/."), (vec!["a".into(), "b".into()], true));
        assert_eq!(c("/a/b/.."), (vec!["a".into()], true));
        assert_eq!(
            c("/cgi-bin%2ffile1.py"),
            (vec!["cgi-bin".into(), "file1.py".into()], false)
        );
        // Above the root is clamped, as for static files (Python drops the connection).
        assert_eq!(
            c("/../../cgi-bin/x"),
            (vec!["cgi-bin".into(), "x".into()], false)
        );
        assert_eq!(
            c("//cgi-bin//x"),
            (vec!["cgi-bin".into(), "x".into()], false)
        );
    }

    fn dirs() -> Vec<Vec<Vec<u8>>> {
        vec![vec![b"cgi-bin".to_vec()], vec![b"htbin".to_vec()]]
    }

    fn t(root: &Path, p: &str) -> Option<(String, String, String)> {
        target(&collapse(p), &dirs(), root).map(|t| {
            (
                String::from_utf8(script_name(&t.dir, &[])).unwrap(),
                String::from_utf8(t.script).unwrap(),
                String::from_utf8(t.path_info).unwrap(),
            )
        })
    }

    #[test]
    fn only_cgi_directories_followed_by_a_slash_are_cgi() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        assert_eq!(t(r, "/cgi-bin"), None);
        assert_eq!(t(r, "/cgi-binx/x.py"), None);
        assert_eq!(t(r, "/CGI-BIN/x"), None);
        assert_eq!(t(r, "/other/cgi-bin/o.py"), None);
        assert_eq!(
            t(r, "/cgi-bin/").unwrap(),
            ("/cgi-bin/".into(), "".into(), "".into())
        );
        assert_eq!(
            t(r, "/htbin/x").unwrap(),
            ("/htbin/".into(), "x".into(), "".into())
        );
        assert_eq!(t(r, "/htbin/../cgi-bin/x").unwrap().1, "x");
        assert_eq!(t(r, "/cgi-bin/../plain.txt"), None);
    }

    #[test]
    fn script_and_path_info_split_after_the_deepest_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("cgi-bin/sub/deeper")).unwrap();
        let r = d.path();
        assert_eq!(
            t(r, "/cgi-bin/x.py/extra/path").unwrap(),
            ("/cgi-bin/".into(), "x.py".into(), "/extra/path".into())
        );
        assert_eq!(
            t(r, "/cgi-bin/sub/deeper/nested.py/pi/x").unwrap(),
            (
                "/cgi-bin/sub/deeper/".into(),
                "nested.py".into(),
                "/pi/x".into()
            )
        );
        assert_eq!(t(r, "/cgi-bin/x.py/").unwrap().2, "/");
        assert_eq!(
            t(r, "/cgi-bin/sub/").unwrap(),
            ("/cgi-bin/sub/".into(), "".into(), "".into())
        );
        // PATH_INFO is decoded once (Python decodes it twice).
        assert_eq!(t(r, "/cgi-bin/x/a%2520b").unwrap().2, "/a%20b");
        assert_eq!(translated(Path::new("/r"), b"/env/"), Path::new("/r/env/"));
        assert_eq!(translated(Path::new("/r"), b"/env/").as_os_str(), "/r/env/");
        assert_eq!(translated(Path::new("/r"), b"/../x"), Path::new("/r/x"));
    }

    #[test]
    fn classifies_script_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("run"), "#!/bin/sh\n").unwrap();
        std::fs::write(p.join("text"), "just text\n").unwrap();
        for exe in ["run", "text"] {
            std::fs::set_permissions(p.join(exe), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(p.join("plain.py"), "").unwrap();
        std::fs::write(p.join(".hidden"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p.join(".hidden"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(p.join("plain.txt"), "").unwrap();
        let root = Root::new(p);
        let f = |name: &str, py| script_file(&root, Path::new(name), py);
        assert_eq!(f("run", true), ScriptFile::Executable(p.join("run")));
        assert_eq!(f("text", true), ScriptFile::NotAProgram);
        assert_eq!(f("plain.py", true), ScriptFile::Python(p.join("plain.py")));
        assert_eq!(f("plain.py", false), ScriptFile::NotExecutable);
        assert_eq!(f("plain.txt", true), ScriptFile::NotExecutable);
        assert_eq!(f("", true), ScriptFile::NotAFile);
        assert_eq!(f("missing", true), ScriptFile::Missing);
        assert_eq!(
            f(".hidden", true),
            ScriptFile::Executable(p.join(".hidden"))
        );
        let hiding = Root::new(p).hide_dotfiles(true);
        assert_eq!(
            script_file(&hiding, Path::new(".hidden"), true),
            ScriptFile::Missing
        );
    }
}
