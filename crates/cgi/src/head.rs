//! Parsing a CGI script's header block (RFC 3875 §6).

use http::{HeaderName, HeaderValue, StatusCode};

/// The parsed header block of a script's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptHead {
    /// The `Status` field (or an NPH script's status line).
    pub status: Option<StatusCode>,
    /// The reason phrase that came with the status, if any (printable ASCII only).
    pub reason: Option<String>,
    /// The `Location` field.
    pub location: Option<String>,
    /// Whether a `Content-Type` field was present.
    pub has_content_type: bool,
    /// Every field but `Status`, in order (`Location` and `Content-Type` included).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why a header block is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// More fields than allowed.
    TooManyFields,
    /// A line without a colon, or a field name or value HTTP cannot carry.
    MalformedField(String),
    /// A `Status` that is not a three-digit code from 100 to 599.
    BadStatus(String),
    /// An NPH script whose first line is not `HTTP/1.x NNN reason`.
    BadStatusLine(String),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManyFields => f.write_str("too many header fields"),
            Self::MalformedField(line) => write!(f, "malformed header line {line:?}"),
            Self::BadStatus(value) => write!(f, "bad Status {value:?}"),
            Self::BadStatusLine(line) => write!(f, "bad NPH status line {line:?}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Finds the end of the header block in `buf`: the index just past the blank line that
/// ends it (`\n\n`, `\r\n\r\n` or a mix), or `None` if it has not arrived yet.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// Hop-by-hop fields a script may not set: the server owns the connection and framing.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Parses a header block (without its terminating blank line). `nph` means the first line
/// is an HTTP status line. At most `max_fields` fields are accepted.
pub fn parse_head(block: &[u8], nph: bool, max_fields: usize) -> Result<ScriptHead, HeadError> {
    let mut head = ScriptHead {
        status: None,
        reason: None,
        location: None,
        has_content_type: false,
        headers: Vec::new(),
    };
    let mut lines = block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty());
    if nph {
        let line = lines.next().unwrap_or_default();
        head.status = Some(parse_status_line(line)?);
        head.reason = reason_of(line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default());
    }
    let mut fields = 0;
    for line in lines {
        fields += 1;
        if fields > max_fields {
            return Err(HeadError::TooManyFields);
        }
        let lossy = || String::from_utf8_lossy(line).into_owned();
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| HeadError::MalformedField(lossy()))?;
        let name = HeaderName::from_bytes(&line[..colon])
            .map_err(|_| HeadError::MalformedField(lossy()))?;
        let value = line[colon + 1..].trim_ascii();
        if name == "status" {
            if head.status.is_some() && !nph {
                return Err(HeadError::BadStatus(lossy()));
            }
            head.status = Some(parse_status(value)?);
            head.reason = reason_of(value.get(4..).unwrap_or_default());
            continue;
        }
        if is_hop_by_hop(&name) {
            continue;
        }
        // RFC 9110 §5.5: no control characters in a field value (http lets DEL through).
        if value.contains(&0x7f) {
            return Err(HeadError::MalformedField(lossy()));
        }
        let value =
            HeaderValue::from_bytes(value).map_err(|_| HeadError::MalformedField(lossy()))?;
        if name == http::header::LOCATION {
            head.location = Some(
                value
                    .to_str()
                    .map_err(|_| HeadError::MalformedField(lossy()))?
                    .to_owned(),
            );
        }
        if name == http::header::CONTENT_TYPE {
            head.has_content_type = true;
        }
        // A length hyper would refuse (or two) must be the script's error, not a dropped
        // connection: only one, and only digits.
        if name == http::header::CONTENT_LENGTH
            && (value.is_empty()
                || !value.as_bytes().iter().all(u8::is_ascii_digit)
                || head
                    .headers
                    .iter()
                    .any(|(n, _)| n == http::header::CONTENT_LENGTH))
        {
            return Err(HeadError::MalformedField(lossy()));
        }
        head.headers.push((name, value));
    }
    Ok(head)
}

/// A reason phrase worth keeping: non-empty, printable ASCII and spaces.
fn reason_of(text: &[u8]) -> Option<String> {
    let text = text.trim_ascii();
    (!text.is_empty() && text.iter().all(|&b| b == b' ' || b.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(text).into_owned())
}

/// `Status: 404 Not Found` → 404 (the reason phrase is not used).
fn parse_status(value: &[u8]) -> Result<StatusCode, HeadError> {
    let code = value.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit));
    let rest_ok = value.len() == 3 || value.get(3) == Some(&b' ');
    code.filter(|_| rest_ok)
        .and_then(|c| StatusCode::from_bytes(c).ok())
        // 1xx are interim responses: a script's final answer cannot be one.
        .filter(|s| (200..600).contains(&s.as_u16()))
        .ok_or_else(|| HeadError::BadStatus(String::from_utf8_lossy(value).into_owned()))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &[u8]) -> Result<StatusCode, HeadError> {
    let bad = || HeadError::BadStatusLine(String::from_utf8_lossy(line).into_owned());
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    let rest = rest
        .get(2..)
        .filter(|_| matches!(line.get(7), Some(b'0' | b'1')) && line.get(8) == Some(&b' '))
        .ok_or_else(bad)?;
    parse_status(rest).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_blank_line() {
        assert_eq!(find_head_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(find_head_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(find_head_end(b"A: b\r\n\nbody"), Some(7));
        assert_eq!(find_head_end(b"A: b\r\n"), None);
        assert_eq!(find_head_end(b"\nbody"), Some(1));
    }

    #[test]
    fn parses_document_responses() {
        let head = parse_head(
            b"Content-Type: text/plain\r\nX-A:  1 \nStatus: 404 Not Found",
            false,
            10,
        )
        .unwrap();
        assert_eq!(head.status, Some(StatusCode::NOT_FOUND));
        assert!(head.has_content_type);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(
            head.headers[1],
            (
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("1")
            )
        );
    }

    #[test]
    fn location_and_hop_by_hop() {
        let head = parse_head(
            b"Location: /x?y\nConnection: close\nTransfer-Encoding: chunked",
            false,
            10,
        )
        .unwrap();
        assert_eq!(head.location.as_deref(), Some("/x?y"));
        assert_eq!(head.headers.len(), 1);
    }

    #[test]
    fn rejects_bad_blocks() {
        assert_eq!(
            parse_head(b"no colon here", false, 10),
            Err(HeadError::MalformedField("no colon here".into()))
        );
        assert!(matches!(
            parse_head(b"Bad Name: x", false, 10),
            Err(HeadError::MalformedField(_))
        ));
        assert!(matches!(
            parse_head(b"X: a\x01b", false, 10),
            Err(HeadError::MalformedField(_))
        ));
        for status in [
            "Status: 99",
            "Status: 600",
            "Status: abc",
            "Status: 2000",
            "Status:",
        ] {
            assert!(
                matches!(
                    parse_head(status.as_bytes(), false, 10),
                    Err(HeadError::BadStatus(_))
                ),
                "{status}"
            );
        }
        assert!(matches!(
            parse_head(b"Status: 200\nStatus: 302", false, 10),
            Err(HeadError::BadStatus(_))
        ));
        assert_eq!(
            parse_head(b"A: 1\nB: 2\nC: 3", false, 2),
            Err(HeadError::TooManyFields)
        );
    }

    #[test]
    fn nph_status_lines() {
        let head = parse_head(b"HTTP/1.1 201 Created\nContent-Type: text/plain", true, 10).unwrap();
        assert_eq!(head.status, Some(StatusCode::CREATED));
        assert_eq!(head.reason.as_deref(), Some("Created"));
        assert_eq!(
            parse_head(b"HTTP/1.0 204\n", true, 10).unwrap().status,
            Some(StatusCode::NO_CONTENT)
        );
        for line in [
            &b"Content-Type: x"[..],
            b"HTTP/2 200 OK",
            b"HTTP/1.1 2000 X",
            b"",
        ] {
            assert!(
                matches!(parse_head(line, true, 10), Err(HeadError::BadStatusLine(_))),
                "{line:?}"
            );
        }
    }
}
