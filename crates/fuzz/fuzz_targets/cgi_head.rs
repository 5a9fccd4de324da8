//! The CGI header-block parser never panics, and what it accepts can never put CR, LF or
//! NUL into a response header.
#![no_main]

use httpserve_cgi::{find_head_end, parse_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let block = match find_head_end(data) {
        Some(end) => &data[..end],
        None => data,
    };
    for nph in [false, true] {
        if let Ok(head) = parse_head(block, nph, 100) {
            assert!(head.headers.len() <= 100);
            for (name, value) in &head.headers {
                assert!(!name.as_str().is_empty());
                assert!(!value.as_bytes().iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            }
            if let Some(status) = head.status {
                assert!((200..600).contains(&status.as_u16()));
            }
        }
    }
});
