//! Where the layers find what the server knows about a request: the client's address and
//! the prefix a service is mounted under. Each layer takes a plain function, so the leaf
//! crates need no axum (an axum app passes one reading `ConnectInfo` or `NestedPath`).

use http::Extensions;
use std::net::SocketAddr;

/// Finds the client's socket address in a request's extensions.
pub type ClientAddrFn = fn(&Extensions) -> Option<SocketAddr>;

/// Finds the path prefix a service is mounted under (e.g. axum's `NestedPath`).
pub type MountPrefixFn = fn(&Extensions) -> Option<&str>;

/// The default [`ClientAddrFn`]: a plain `SocketAddr` extension.
pub fn socket_addr_extension(extensions: &Extensions) -> Option<SocketAddr> {
    extensions.get::<SocketAddr>().copied()
}

/// The default [`MountPrefixFn`]: mounted at the root.
pub fn no_mount_prefix(_: &Extensions) -> Option<&str> {
    None
}
