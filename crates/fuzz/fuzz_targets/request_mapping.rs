//! A request path, mapped and opened below a real directory with the `within` symlink
//! policy and hidden dot-files, never reaches anything outside the root or hidden.
#![no_main]

use httpserve_core::{Entry, Resolved, Root, SymlinkPolicy};
use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

const SECRET: &[u8] = b"FUZZ-SECRET-OUTSIDE";
const HIDDEN: &[u8] = b"FUZZ-SECRET-HIDDEN";

/// <tmp>/outside/secret, and a root with files, a dot-file, and links pointing out.
fn root() -> &'static Root {
    static ROOT: OnceLock<Root> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base: PathBuf = std::env::temp_dir().join(format!("httpserve-fuzz-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), SECRET).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(root.join(".env"), HIDDEN).unwrap();
        let _ = std::os::unix::fs::symlink("../outside/secret", root.join("rel-out"));
        let _ = std::os::unix::fs::symlink(base.join("outside"), root.join("abs-out"));
        let _ = std::os::unix::fs::symlink("sub/b.txt", root.join("in"));
        Root::new(root).symlinks(SymlinkPolicy::WithinRoot).hide_dotfiles(true)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Only what an HTTP request can carry: a valid request target.
    let Ok(uri) = text.parse::<http::Uri>() else {
        return;
    };
    let resolved = Resolved::resolve(root(), uri.path());
    if let Entry::File { file, .. } = resolved.entry() {
        let mut content = Vec::new();
        let _ = (&*file).read_to_end(&mut content);
        assert_ne!(content, SECRET, "{text:?} reached the outside file");
        assert_ne!(content, HIDDEN, "{text:?} reached a hidden file");
    }
});
