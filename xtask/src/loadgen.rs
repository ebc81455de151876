//! The load generator's pieces shared by the soak and the visitor benchmark: one keep-alive
//! HTTP/1.1 connection, per-kind latency and error tallies, client threads that loop until
//! told to stop, and percentiles. Traffic goes only to the address it is given (loopback).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

/// A response: status, ETag header, body.
pub(crate) struct Resp {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            w: s.try_clone()?,
            r: BufReader::new(s),
        })
    }

    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &str,
    ) -> Result<Resp> {
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            self.w,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line.split(' ').nth(1).context("status line")?.parse()?;
        let (mut len, mut etag) = (0usize, None);
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
            if lower.starts_with("etag:") {
                etag = Some(line[5..].trim().to_string());
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok(Resp { status, etag, body })
    }
}

/// Latencies and errors of one kind of traffic.
#[derive(Default)]
pub(crate) struct Tally {
    pub lat: Vec<Duration>,
    pub errors: Vec<String>,
}

impl Tally {
    pub(crate) fn check(&mut self, what: &str, t: Instant, r: &Resp, ok: &[u16]) {
        self.lat.push(t.elapsed());
        if !ok.contains(&r.status) && self.errors.len() < 20 {
            self.errors.push(format!(
                "{what}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
}

pub(crate) type Shared = Arc<Mutex<Vec<(&'static str, Tally)>>>;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs `body` in a loop on its own connection until `stop`, then files its tally.
pub(crate) fn client(
    addr: &str,
    kind: &'static str,
    stop: &Arc<AtomicBool>,
    out: &Shared,
    mut body: impl FnMut(&mut Conn, &mut Tally, u64) -> Result<()> + Send + 'static,
) -> std::thread::JoinHandle<Result<()>> {
    let (addr, stop, out) = (addr.to_string(), stop.clone(), out.clone());
    std::thread::spawn(move || {
        let mut conn = Conn::open(&addr)?;
        let mut tally = Tally::default();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            body(&mut conn, &mut tally, n)
                .with_context(|| format!("{kind} client, request {n}"))?;
            n += 1;
        }
        out.lock().expect("tally lock").push((kind, tally));
        Ok(())
    })
}
