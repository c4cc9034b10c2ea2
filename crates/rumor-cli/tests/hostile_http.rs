//! The agent's HTTP API is safe by default (issue 15, item 8), tried against
//! real agent processes on loopback: key material never leaves the API, the
//! agent refuses to start with a keyring or a non-loopback `--http` but no
//! token, a foreign `Host` is refused on a loopback bind (DNS rebinding), the
//! read token guards reads, bodies over the limit get 413 naming it; and the
//! event handler's backlog is bounded, its drops counted.
//!
//! No test sends a packet outside loopback: the non-loopback bind is refused
//! before anything is bound.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "w-token";
const READ_TOKEN: &str = "r-token";

/// A keyring file holding `keys`, in a fresh directory.
fn keyring(tag: &str, keys: &[&str]) -> std::path::PathBuf {
    let ring = temp_dir(tag).join("keyring");
    std::fs::write(&ring, keys.join("\n") + "\n").unwrap();
    ring
}

/// Whether `text` holds any 16 consecutive hex digits of `key`.
fn leaks(text: &str, key: &str) -> bool {
    (0..=key.len() - 16).any(|i| text.contains(&key[i..i + 16]))
}

/// Run `rumor agent` with `args` (after a name, a loopback gossip bind and
/// the local profile) and expect it to exit by itself within a deadline.
fn agent_exit(args: &[&str]) -> (Option<i32>, String) {
    let gossip = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .args(["agent", "--name", "refused", "--profile", "local"])
        .args(["--bind", &gossip])
        .args(args)
        .env_remove("RUMOR_HTTP_TOKEN")
        .env_remove("RUMOR_HTTP_INSECURE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rumor agent");
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the agent kept running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err)
}

/// One raw HTTP/1.1 request (`head` is its request line and headers, each
/// line ending in CRLF): the status code and the whole answer.
fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// `GET path` with the given `Host` header: the status code and the body.
fn raw_get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let (code, text) = raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"),
        "",
    );
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

#[test]
fn keys_are_shown_by_fingerprint_only() {
    let (k0, k1) = ("5a".repeat(32), "c3".repeat(32));
    let ring = keyring("fp", &[&k0]);
    let a = agent("fp")
        .args(&["--keyring", ring.to_str().unwrap(), "--http-token", TOKEN])
        .spawn();
    let t = Some(TOKEN);
    let u = |p: &str| a.url(p);

    let (s, v) = request("GET", &u("/v1/keys"), t, None);
    assert_eq!(s, 200, "{v}");
    assert!(
        !leaks(&v.to_string(), &k0),
        "GET /v1/keys leaks the key: {v}"
    );
    let primary = v["primary"].as_str().expect("a primary fingerprint");
    assert_eq!(primary.len(), 16, "{v}");
    assert_eq!(v["keys"][0], primary);

    let (s, v) = request(
        "POST",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"key":"{k1}"}}"#)),
    );
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(!leaks(&text, &k0) && !leaks(&text, &k1), "{text}");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(2), "{v}");

    let (s, v) = request(
        "POST",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"op":"use","key":"{k1}"}}"#)),
    );
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["primary"], primary, "{v}");
    let text = v.to_string();
    assert!(!leaks(&text, &k0) && !leaks(&text, &k1), "{text}");

    let (s, v) = request(
        "DELETE",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"key":"{k0}"}}"#)),
    );
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(!leaks(&text, &k0) && !leaks(&text, &k1), "{text}");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(1), "{v}");

    // The fingerprint the CLI computes offline is the one the API shows.
    let o = Command::new(BIN)
        .args(["keys", "fingerprint", &k1])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), v["primary"].as_str().unwrap());
}

#[test]
fn a_keyring_without_a_token_is_refused_at_start() {
    let ring = keyring("notoken", &[&"11".repeat(32)]);
    let http = format!("127.0.0.1:{}", free_port());
    let (code, err) = agent_exit(&["--keyring", ring.to_str().unwrap(), "--http", &http]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--http-token"), "{err}");
    assert!(err.contains("--http-insecure"), "{err}");
    // Nothing listens on the HTTP address: the check runs before binding.
    assert!(TcpStream::connect(&http).is_err());

    // The same key in the config file is refused the same way.
    let conf = ring.with_file_name("rumor.toml");
    std::fs::write(&conf, format!("keyring = {:?}\n", ring.to_str().unwrap())).unwrap();
    let (code, err) = agent_exit(&["--config", conf.to_str().unwrap(), "--http", &http]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--http-token"), "{err}");

    // --http-insecure opts out, with a warning at start.
    let a = agent("insecure")
        .args(&["--keyring", ring.to_str().unwrap(), "--http-insecure"])
        .spawn();
    wait_until("the insecure warning", DEADLINE, || {
        a.stderr().contains("WARN") && a.stderr().contains("--http-insecure")
    });
}

#[test]
fn a_non_loopback_http_without_a_token_is_refused_at_start() {
    // 0.0.0.0 is refused before it is bound; nothing is sent anywhere.
    let port = free_port();
    let http = format!("0.0.0.0:{port}");
    let (code, err) = agent_exit(&["--http", &http]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--http-token"), "{err}");
    assert!(err.contains(&http), "{err}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    // Through the environment, as Kubernetes sets it, too.
    let gossip = format!("127.0.0.1:{}", free_port());
    let o = Command::new(BIN)
        .args(["agent", "--name", "env", "--bind", &gossip])
        .env("RUMOR_HTTP", &http)
        .env_remove("RUMOR_HTTP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--http-token"), "{}", stderr(&o));
}

#[test]
fn a_foreign_host_header_is_refused_on_loopback() {
    let a = agent("host").spawn();
    let port = a.http.port();
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "localhost.evil.example",
    ] {
        let (code, body) = raw_get(a.http, "/v1/members", host);
        assert_eq!(code, 421, "Host {host}: {body}");
        assert!(body.contains("DNS rebinding"), "{body}");
        // The dashboard and writes are refused as well.
        let (code, _) = raw_get(a.http, "/", host);
        assert_eq!(code, 421, "Host {host}: /");
    }
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (code, body) = raw_get(a.http, "/v1/members", &host);
        assert_eq!(code, 200, "Host {host}: {body}");
    }
    // Each refusal is counted.
    assert_eq!(series(&a, "rumor_http_refused_total", "host"), Some(6.0));
}

#[test]
fn the_read_token_guards_reads() {
    let a = agent("rt")
        .args(&["--http-token", TOKEN, "--http-read-token", READ_TOKEN])
        .spawn();
    let u = |p: &str| a.url(p);
    for p in [
        "/v1/members",
        "/v1/members/rt",
        "/v1/self",
        "/v1/kv",
        "/v1/kv/x",
        "/v1/aggregates",
        "/v1/timeseries",
        "/metrics",
    ] {
        let (s, v) = request("GET", &u(p), None, None);
        assert_eq!(s, 401, "{p}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("--http-read-token"),
            "{v}"
        );
        let (s, _) = request("GET", &u(p), Some("wrong"), None);
        assert_eq!(s, 403, "{p}");
        let (s, _) = request("GET", &u(p), Some(READ_TOKEN), None);
        assert!(s == 200 || s == 404, "{p}: {s}");
        // The write token grants reads too.
        let (s2, _) = request("GET", &u(p), Some(TOKEN), None);
        assert_eq!(s, s2, "{p}");
    }
    // The event stream too.
    let (s, _) = request("GET", &u("/v1/events"), None, None);
    assert_eq!(s, 401);
    // Health stays open for probes.
    let (s, _) = request("GET", &u("/v1/health"), None, None);
    assert_eq!(s, 200);
    // The read token does not grant writes.
    let (s, _) = request("PUT", &u("/v1/kv/x"), Some(READ_TOKEN), Some("v"));
    assert_eq!(s, 403);
    let (s, _) = request("PUT", &u("/v1/kv/x"), Some(TOKEN), Some("v"));
    assert_eq!(s, 200);
    // The CLI sends the token from the environment.
    let o = Command::new(BIN)
        .args(["kv", "get", "x", "--http", &a.http.to_string()])
        .env("RUMOR_HTTP_TOKEN", READ_TOKEN)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "v");
    let o = Command::new(BIN)
        .args(["members", "--http", &a.http.to_string()])
        .env_remove("RUMOR_HTTP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));

    // A read token alone (writes open, reads closed) is refused at start.
    let (code, err) = agent_exit(&["--http-read-token", READ_TOKEN]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--http-token"), "{err}");
}

#[test]
fn the_dashboard_signs_in_with_the_read_token() {
    let a = agent("dash")
        .args(&["--http-token", TOKEN, "--http-read-token", READ_TOKEN])
        .spawn();
    let get = |path: &str, cookie: &str| {
        raw(
            a.http,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}"),
            "",
        )
    };
    // Without a session: the sign-in form, not the dashboard.
    let (code, text) = get("/", "");
    assert_eq!(code, 401, "{text}");
    assert!(
        text.contains("<form") && !text.contains("EventSource"),
        "{text}"
    );
    let login = |token: &str| {
        raw(
            a.http,
            "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            &format!("token={token}"),
        )
    };
    let (code, _) = login("wrong");
    assert_eq!(code, 403);
    let (code, text) = login(READ_TOKEN);
    assert_eq!(code, 303, "{text}");
    let cookie = text
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(READ_TOKEN),
        "the cookie holds the token: {cookie}"
    );
    let session = format!("Cookie: {}\r\n", cookie.split(';').next().unwrap());
    // With the session: the dashboard, its reads and its event stream...
    let (code, text) = get("/", &session);
    assert_eq!(code, 200);
    assert!(text.contains("EventSource"));
    let (code, text) = get("/v1/members", &session);
    assert_eq!(code, 200, "{text}");
    let (code, text) = get("/v1/self", &session);
    assert_eq!(code, 200, "{text}");
    // ...but no writes and no keyring.
    let (code, _) = raw(
        a.http,
        &format!("PUT /v1/kv/x HTTP/1.1\r\nHost: localhost\r\n{session}"),
        "v",
    );
    assert_eq!(code, 401);
    let (code, _) = get("/v1/keys", &session);
    assert_eq!(code, 401);
    // A forged cookie is no session.
    let (code, _) = get("/v1/members", "Cookie: rumor_session=00\r\n");
    assert_eq!(code, 401);
}

#[test]
fn bodies_over_the_limit_get_413_naming_it() {
    let a = agent("big").spawn();
    // Over the API's body limit.
    let big = "x".repeat(300 * 1024);
    let (s, v) = request("PUT", &a.url("/v1/kv/big"), None, Some(&big));
    assert_eq!(s, 413, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("max_body") && e.contains("262144"), "{e}");
    let (s, v) = request(
        "POST",
        &a.url("/v1/event"),
        None,
        Some(&format!(r#"{{"name":"e","payload":"{big}"}}"#)),
    );
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("max_body"), "{v}");
    // Under it, but over the key space's value limit: the core's limit.
    let (s, v) = request("PUT", &a.url("/v1/kv/big"), None, Some(&big[..100 * 1024]));
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("65536"), "{v}");
    // A body up to 1 MiB is read to its end before the 413 goes out, so the
    // client sees the answer rather than a reset connection.
    for _ in 0..5 {
        let (s, v) = request(
            "PUT",
            &a.url("/v1/kv/big"),
            None,
            Some(&"y".repeat(1024 * 1024)),
        );
        assert_eq!(s, 413, "{v}");
    }
    // The CLI refuses such a body itself, in one line naming the limit.
    let mut child = Command::new(BIN)
        .args(["kv", "put", "big", "--http", &a.http.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(big.as_bytes());
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("max_body") && err.contains("262144"), "{err}");
    assert_eq!(
        series(&a, "rumor_http_refused_total", "body_too_large"),
        Some(7.0)
    );
}

#[test]
fn a_full_quota_gets_429_naming_the_limit() {
    let dir = temp_dir("quota");
    let conf = dir.join("rumor.toml");
    std::fs::write(
        &conf,
        "[limits]\nmax_kv_keys = 2\nmax_state_keys_per_owner = 1\n",
    )
    .unwrap();
    let a = agent("quota")
        .args(&["--config", conf.to_str().unwrap()])
        .spawn();
    for k in ["one", "two"] {
        let (s, v) = request("PUT", &a.url(&format!("/v1/kv/{k}")), None, Some("v"));
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = request("PUT", &a.url("/v1/kv/three"), None, Some("v"));
    assert_eq!(s, 429, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("kv_quota") && e.contains("max_kv_keys"), "{e}");
    // An existing key may still be rewritten: the quota counts keys.
    let (s, v) = request("PUT", &a.url("/v1/kv/one"), None, Some("w"));
    assert_eq!(s, 200, "{v}");
}

/// The value of the series `name` labelled `reason`, if the agent exports it.
fn series(a: &Agent, name: &str, reason: &str) -> Option<f64> {
    let text = ureq::get(&a.url("/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The value of the counter of dropped handler events for `reason`.
fn dropped(a: &Agent, reason: &str) -> Option<f64> {
    series(a, "rumor_event_handler_dropped_total", reason)
}

#[test]
fn a_slow_event_handler_drops_and_counts_the_excess() {
    let dir = temp_dir("backlog");
    let ran = dir.join("ran");
    // Each run takes 2 s, so 20 events in a burst cannot all wait in a
    // backlog of 2: the excess is dropped.
    let script = format!("echo x >> {}; sleep 2", ran.display());
    let a = agent("slow")
        .args(&["--event-handler", &script, "--event-handler-backlog", "2"])
        .spawn();
    for i in 0..20 {
        let (s, v) = request(
            "POST",
            &a.url("/v1/event"),
            None,
            Some(&format!(r#"{{"name":"burst","payload":"{i}"}}"#)),
        );
        assert_eq!(s, 200, "{v}");
    }
    wait_until("dropped events counted", DEADLINE, || {
        dropped(&a, "backlog_full").is_some_and(|n| n >= 15.0)
    });
    // The handler still runs (the first and the backlog), and the drops are
    // reported by one rate-limited warning, not one per event.
    wait_until("the handler ran", DEADLINE, || ran.exists());
    let log = a.stderr();
    let warnings = log.matches("event handler is behind").count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");

    // A backlog of 0 is refused at start.
    let (code, err) = agent_exit(&["--event-handler", "true", "--event-handler-backlog", "0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("event_handler_backlog"), "{err}");
}
