//! `translate_path` never leaves the root, whatever the request path.
#![no_main]

use httpserve_core::translate_path;
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(uri_path) = std::str::from_utf8(data) else {
        return;
    };
    let root = Path::new("/srv/root");
    let Some(t) = translate_path(root, uri_path) else {
        // Refused: the decoded path holds a NUL.
        assert!(percent_decoded_has_nul(uri_path));
        return;
    };
    let rest = t.fs_path.strip_prefix(root).expect("translated path left the root");
    for component in rest.components() {
        assert!(matches!(component, Component::Normal(_)), "{uri_path:?} gave {:?}", t.fs_path);
        let bytes = component.as_os_str().as_encoded_bytes();
        assert!(!bytes.contains(&b'/') && !bytes.contains(&0));
    }
});

fn percent_decoded_has_nul(s: &str) -> bool {
    s.contains('\0') || s.to_ascii_lowercase().contains("%00")
}
