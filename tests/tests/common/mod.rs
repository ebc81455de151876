//! Helpers shared by the tests that talk to a real `pal serve` over loopback.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

pub mod browser;

/// One HTTP/1.1 request (`Connection: close`); returns status and body (chunked bodies raw).
pub fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    call_as(addr, method, path, body, None)
}

/// [`call`] with `Authorization: Bearer <bearer>` when given.
pub fn call_as(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, rest.to_string())
}

/// A request that must succeed (2xx) with a JSON body.
pub fn json(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    json_as(addr, method, path, body, None)
}

/// [`json`] with a bearer credential.
pub fn json_as(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> Value {
    let (status, text) = call_as(addr, method, path, body, bearer);
    assert!(status < 300, "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The `pal` binary of this build (pal-cli), beside the test executable's `deps/` directory.
/// `cargo test --workspace` builds it; testing this package alone needs `cargo build -p pal-cli`.
pub fn pal_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/PROFILE/deps");
    let pal = dir.join(format!("pal{}", std::env::consts::EXE_SUFFIX));
    assert!(
        pal.is_file(),
        "{} is missing: build it first (cargo build -p pal-cli, with the same profile)",
        pal.display()
    );
    pal
}
