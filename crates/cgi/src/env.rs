//! The script's environment (RFC 3875 §4.1), built from scratch for every request.

use headers::authorization::Basic;
use headers::{Authorization, HeaderMapExt};
use http::{HeaderMap, HeaderName, Method, Version, header};
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The `PATH` a script gets when the server has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the environment is built from.
#[derive(Debug)]
pub(crate) struct EnvInput<'a> {
    pub(crate) method: &'a Method,
    pub(crate) version: Version,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) request_uri: &'a str,
    pub(crate) query: &'a str,
    pub(crate) script_name: &'a [u8],
    pub(crate) script_filename: &'a Path,
    pub(crate) path_info: &'a [u8],
    pub(crate) path_translated: Option<&'a Path>,
    pub(crate) client: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) content_length: Option<u64>,
    pub(crate) server_software: &'a str,
    pub(crate) pass_env: &'a [String],
}

/// Request headers that never become `HTTP_*` variables: credentials (RFC 3875 §4.1.18),
/// the httpoxy vector (`Proxy` → `HTTP_PROXY`, CVE-2016-5386), fields already given as
/// `CONTENT_*`, and hop-by-hop fields that describe the client's connection, not the request.
fn is_withheld(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization"
            | "proxy-authorization"
            | "proxy"
            | "content-type"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// `HTTP_<NAME>` for a header name, or `None` when the name could collide with another
/// spelling: only letters, digits and `-` are accepted, so `X_Forwarded_For` (or
/// `X.Forwarded-For`) can never impersonate `X-Forwarded-For`.
pub(crate) fn http_var_name(name: &HeaderName) -> Option<String> {
    let name = name.as_str();
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let mut var = String::with_capacity(5 + name.len());
    var.push_str("HTTP_");
    var.extend(name.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    Some(var)
}

fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

/// The environment of one script run. Nothing of the server's own environment gets in
/// but `PATH` and the names in `pass_env`.
pub(crate) fn build_env(input: &EnvInput<'_>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(32);
    let mut set = |k: &str, v: OsString| env.push((os(k), v));

    set(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| os(DEFAULT_PATH)),
    );
    for name in input.pass_env {
        if name != "PATH"
            && let Some(value) = std::env::var_os(name)
        {
            set(name, value);
        }
    }
    set("GATEWAY_INTERFACE", os("CGI/1.1"));
    set("SERVER_SOFTWARE", os(input.server_software));
    set("SERVER_PROTOCOL", os(format!("{:?}", input.version)));
    let (host_name, host_port) = host_parts(input.headers);
    let server_name = host_name
        .or_else(|| input.local.map(|a| a.ip().to_string()))
        .unwrap_or_else(|| String::from("localhost"));
    set("SERVER_NAME", os(server_name));
    let port = input
        .local
        .map(|a| a.port().to_string())
        .or(host_port)
        .unwrap_or_else(|| String::from("80"));
    set("SERVER_PORT", os(port));
    set("REQUEST_METHOD", os(input.method.as_str()));
    set("REQUEST_URI", os(input.request_uri));
    set("QUERY_STRING", os(input.query));
    set("SCRIPT_NAME", os(OsStr::from_bytes(input.script_name)));
    set("SCRIPT_FILENAME", os(input.script_filename));
    set("PATH_INFO", os(OsStr::from_bytes(input.path_info)));
    if let Some(translated) = input.path_translated {
        set("PATH_TRANSLATED", os(translated));
    }
    if let Some(client) = input.client {
        set("REMOTE_ADDR", os(client.ip().to_string()));
        set("REMOTE_PORT", os(client.port().to_string()));
    } else {
        set("REMOTE_ADDR", os(""));
    }
    if let Some(len) = input.content_length {
        set("CONTENT_LENGTH", os(len.to_string()));
    }
    if let Some(ct) = input.headers.get(header::CONTENT_TYPE) {
        set("CONTENT_TYPE", os(OsStr::from_bytes(ct.as_bytes())));
    }
    if let Some(auth) = input.headers.get(header::AUTHORIZATION)
        && let Some(scheme) = auth.as_bytes().split(u8::is_ascii_whitespace).next()
        && !scheme.is_empty()
    {
        set("AUTH_TYPE", os(OsStr::from_bytes(scheme)));
        if let Some(basic) = input.headers.typed_get::<Authorization<Basic>>() {
            set("REMOTE_USER", os(basic.username()));
        }
    }
    for name in input.headers.keys() {
        if is_withheld(name) {
            continue;
        }
        let Some(var) = http_var_name(name) else {
            tracing::debug!(target: "httpserve::cgi", "dropped header {name}: not passed to scripts");
            continue;
        };
        let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
        let mut value = Vec::new();
        for (i, v) in input.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(separator);
            }
            value.extend_from_slice(v.as_bytes());
        }
        set(&var, os(OsStr::from_bytes(&value)));
    }
    env
}

/// The host name and port of the `Host` header, if any.
fn host_parts(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return (None, None);
    };
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return (None, None);
    };
    // RFC 3875 §4.1.14: an IPv6 server-name keeps its brackets.
    let name = authority.host().to_owned();
    (Some(name), authority.port_u16().map(|p| p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let input = EnvInput {
            method: &Method::POST,
            version: Version::HTTP_11,
            headers: &map,
            request_uri: "/cgi-bin/s/x?a=1",
            query: "a=1",
            script_name: b"/cgi-bin/s",
            script_filename: Path::new("/srv/cgi-bin/s"),
            path_info: b"/x",
            path_translated: Some(Path::new("/srv/x")),
            client: Some("127.0.0.1:5000".parse().unwrap()),
            local: Some("127.0.0.1:8000".parse().unwrap()),
            content_length: Some(5),
            server_software: "httpserve/test",
            pass_env: &[],
        };
        build_env(&input)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn rfc_3875_variables() {
        let env = env_of(&[("host", "example.com:8080"), ("content-type", "text/plain")]);
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", "httpserve/test"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "8000"),
            ("REQUEST_METHOD", "POST"),
            ("QUERY_STRING", "a=1"),
            ("SCRIPT_NAME", "/cgi-bin/s"),
            ("PATH_INFO", "/x"),
            ("PATH_TRANSLATED", "/srv/x"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", "5000"),
            ("CONTENT_LENGTH", "5"),
            ("CONTENT_TYPE", "text/plain"),
            ("HTTP_HOST", "example.com:8080"),
        ] {
            assert_eq!(get(&env, k), Some(v), "{k}");
        }
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
    }

    #[test]
    fn httpoxy_credentials_and_underscores_are_withheld() {
        let env = env_of(&[
            ("proxy", "http://evil:1"),
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-real-ip", "1.2.3.4"),
        ]);
        assert_eq!(get(&env, "HTTP_PROXY"), None);
        assert_eq!(get(&env, "HTTP_AUTHORIZATION"), None);
        assert_eq!(get(&env, "AUTH_TYPE"), Some("Basic"));
        assert_eq!(get(&env, "REMOTE_USER"), Some("user"));
        assert_eq!(get(&env, "HTTP_X_FORWARDED_FOR"), None);
        assert_eq!(get(&env, "HTTP_X_REAL_IP"), Some("1.2.3.4"));
    }

    #[test]
    fn repeated_headers_are_joined() {
        let env = env_of(&[
            ("accept", "a"),
            ("accept", "b"),
            ("cookie", "x=1"),
            ("cookie", "y=2"),
        ]);
        assert_eq!(get(&env, "HTTP_ACCEPT"), Some("a, b"));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some("x=1; y=2"));
    }

    #[test]
    fn bearer_tokens_set_only_auth_type() {
        let env = env_of(&[("authorization", "Bearer abc")]);
        assert_eq!(get(&env, "AUTH_TYPE"), Some("Bearer"));
        assert_eq!(get(&env, "REMOTE_USER"), None);
    }

    #[test]
    fn the_server_environment_does_not_leak() {
        let env = env_of(&[]);
        let cgi_vars = [
            "PATH",
            "GATEWAY_INTERFACE",
            "SERVER_SOFTWARE",
            "SERVER_PROTOCOL",
            "SERVER_NAME",
            "SERVER_PORT",
            "REQUEST_METHOD",
            "REQUEST_URI",
            "QUERY_STRING",
            "SCRIPT_NAME",
            "SCRIPT_FILENAME",
            "PATH_INFO",
            "PATH_TRANSLATED",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "CONTENT_LENGTH",
        ];
        for (name, _) in &env {
            assert!(cgi_vars.contains(&name.as_str()), "unexpected {name}");
        }
        // The test runner's own variables (cargo sets CARGO_PKG_NAME) stay out.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        assert_eq!(get(&env, "CARGO_PKG_NAME"), None);
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn ipv6_server_names_keep_their_brackets() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "[::1]:8080".parse().unwrap());
        assert_eq!(
            host_parts(&headers),
            (Some("[::1]".to_owned()), Some("8080".to_owned()))
        );
        headers.insert(header::HOST, "Example.COM".parse().unwrap());
        assert_eq!(host_parts(&headers), (Some("Example.COM".to_owned()), None));
    }
}
