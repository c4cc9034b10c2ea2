//! A small HTTP/1.0 client for the agents' APIs, which listen on each
//! host's own loopback: the socket is made inside the host's namespace, so
//! control traffic never crosses the emulator and no fault touches it.

use crate::netns::Namespace;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The port every agent's HTTP API listens on, on its host's loopback.
pub const API_PORT: u16 = 7947;

fn connect(ns: &Namespace, timeout: Duration) -> Result<TcpStream> {
    let at = SocketAddr::from(([127, 0, 0, 1], API_PORT));
    let s = ns
        .run_in(move || TcpStream::connect_timeout(&at, timeout))?
        .with_context(|| format!("connect to the agent in {}", ns.name()))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Sends one request and returns the status and the body.
pub fn call(
    ns: &Namespace,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    let mut s = connect(ns, timeout)?;
    let kind = if body.first() == Some(&b'{') {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: no HTTP header in the answer"))?;
    let status = std::str::from_utf8(&raw[..split])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: no status in the answer"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// Sends one request and parses a JSON answer (`Null` when the body is not JSON).
pub fn json(ns: &Namespace, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value)> {
    let (status, body) = call(ns, method, path, body, Duration::from_secs(5))?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A GET that must answer 200 with JSON.
pub fn get(ns: &Namespace, path: &str) -> Result<Value> {
    match json(ns, "GET", path, b"")? {
        (200, v) => Ok(v),
        (s, v) => bail!("GET {path} in {}: {s} {v}", ns.name()),
    }
}

/// One event an agent's `/v1/events` stream delivered.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Seconds since the run started, when the harness read it.
    pub at: f64,
    /// Which process of the host (0 for the first start, then +1 per restart).
    pub generation: u32,
    /// The SSE `data:` object.
    pub data: Value,
}

/// Follows an agent's event stream on a thread, appending to `into` until
/// the agent's process ends.
pub fn follow_events(
    ns: &Namespace,
    generation: u32,
    t0: Instant,
    into: Arc<Mutex<Vec<Seen>>>,
) -> Result<()> {
    let mut s = connect(ns, Duration::from_secs(5))?;
    s.write_all(b"GET /v1/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    // Long pauses (SIGSTOP) stall the stream; only the process's end stops it.
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            if let Ok(data) = serde_json::from_str::<Value>(data.trim()) {
                let at = t0.elapsed().as_secs_f64();
                into.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Seen {
                        at,
                        generation,
                        data,
                    });
            }
        }
    });
    Ok(())
}
