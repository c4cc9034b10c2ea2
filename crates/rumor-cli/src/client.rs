//! The CLI client: commands that talk to a running agent's HTTP API.
//!
//! Every command prints one line on stderr and exits 1 when no agent
//! answers, naming the address it tried; API errors are shown with the
//! agent's own message.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use crate::cli::{
    parse_tag, AggArgs, ClientArgs, EventArgs, ForceLeaveArgs, InfoArgs, JoinArgs, KvExportArgs,
    KvImportArgs, KvOp, MembersArgs, MonitorArgs, StateOp, TagsOp,
};
use crate::http::MemberJson;
use crate::member_filter::MemberFilter;

/// A connection to one agent.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the agent at `args.http`.
    pub fn new(args: &ClientArgs) -> Self {
        Self::with_timeout(args, Some(Duration::from_secs(30)))
    }

    /// A client whose reads time out after `read` (`None`: never, for streams).
    pub fn with_timeout(args: &ClientArgs, read: Option<Duration>) -> Self {
        let addr = args.http.trim();
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let mut b = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(3));
        if let Some(r) = read {
            b = b.timeout_read(r);
        }
        Client {
            base,
            token: args.http_token.clone().filter(|t| !t.is_empty()),
            agent: b.build(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let mut r = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    fn handle(&self, res: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response> {
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, r)) => {
                let msg = r
                    .into_json::<Value>()
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| "no error message".into());
                bail!("agent at {} answered {code}: {msg}", self.base)
            }
            Err(ureq::Error::Transport(t)) => {
                bail!(
                    "no agent answers at {}: {}",
                    self.base,
                    transport_reason(&t)
                )
            }
        }
    }

    /// `POST path` with a JSON body; the answer as a reader, to read as it
    /// streams (no read timeout).
    pub fn post_streaming(&self, path: &str, body: Value) -> Result<impl std::io::BufRead> {
        check_size(body.to_string().len())?;
        let r = self.handle(self.request("POST", path).send_json(body))?;
        Ok(std::io::BufReader::new(r.into_reader()))
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let r = self.handle(self.request("GET", path).call())?;
        r.into_json()
            .map_err(|e| anyhow!("bad answer from {}: {e}", self.base))
    }

    /// `method path` with a JSON body, answer as JSON.
    pub fn send(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        check_size(body.to_string().len())?;
        let r = self.handle(self.request(method, path).send_json(body))?;
        r.into_json()
            .map_err(|e| anyhow!("bad answer from {}: {e}", self.base))
    }

    /// `method path` with a raw body, answer as JSON.
    pub fn send_bytes(&self, method: &str, path: &str, body: &[u8]) -> Result<Value> {
        check_size(body.len())?;
        let r = self.handle(
            self.request(method, path)
                .set("Content-Type", "application/octet-stream")
                .send_bytes(body),
        )?;
        r.into_json()
            .map_err(|e| anyhow!("bad answer from {}: {e}", self.base))
    }

    /// `GET path` as JSON; `None` on 404.
    pub fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        match self.request("GET", path).call() {
            Err(ureq::Error::Status(404, _)) => Ok(None),
            res => {
                let r = self.handle(res)?;
                r.into_json()
                    .map(Some)
                    .map_err(|e| anyhow!("bad answer from {}: {e}", self.base))
            }
        }
    }

    /// `GET path` with its status, answer as JSON.
    pub fn get_status(&self, path: &str) -> Result<(u16, Value)> {
        let r = self.handle(self.request("GET", path).call())?;
        let code = r.status();
        let v = r
            .into_json()
            .map_err(|e| anyhow!("bad answer from {}: {e}", self.base))?;
        Ok((code, v))
    }

    /// `GET path` as a stream of lines.
    pub fn stream(&self, path: &str) -> Result<impl BufRead> {
        let r = self.handle(
            self.request("GET", path)
                .set("Accept", "text/event-stream")
                .call(),
        )?;
        Ok(BufReader::new(r.into_reader()))
    }
}

/// Refuse, before sending, a body the agent would refuse (413): one line
/// naming the limit, instead of a reset connection halfway through.
fn check_size(len: usize) -> Result<()> {
    if len > crate::http::MAX_BODY {
        bail!(
            "request body too large: {len} bytes, the HTTP API's limit (max_body) is {} bytes",
            crate::http::MAX_BODY
        );
    }
    Ok(())
}

fn transport_reason(t: &ureq::Transport) -> String {
    use std::error::Error as _;
    let mut msg = t.kind().to_string();
    let mut src = t.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// Lay out rows as left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn tags_text(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `rumor members`: the agent's list, filtered here (see [`crate::member_filter`]).
pub fn members(args: &MembersArgs) -> Result<()> {
    let filter = MemberFilter::new(args.name.as_deref(), &args.tags)?;
    let mut path = "/v1/members".to_string();
    if let Some(s) = &args.status {
        if !matches!(s.as_str(), "alive" | "suspect" | "dead" | "failed" | "left") {
            bail!("unknown status {s:?}: expected alive, suspect, dead or left");
        }
        path.push_str(&format!("?status={s}"));
    }
    let v = Client::new(&args.client).get(&path)?;
    let list: Vec<MemberJson> =
        serde_json::from_value(v).map_err(|e| anyhow!("bad member list from the agent: {e}"))?;
    let list: Vec<MemberJson> = list.into_iter().filter(|m| filter.matches(m)).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    let mut head = vec!["NAME", "ADDRESS", "STATUS"];
    if args.detailed {
        head.extend(["INCARNATION", "PROTOCOL", "STATE-KEYS"]);
    }
    head.push("TAGS");
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for m in &list {
        let mut row = vec![m.name.clone(), m.addr.clone(), m.status.clone()];
        if args.detailed {
            row.push(m.incarnation.to_string());
            row.push(
                m.protocol
                    .map_or("?".into(), |[lo, hi]| format!("{lo}-{hi}")),
            );
            row.push(m.state.len().to_string());
        }
        row.push(tags_text(&m.tags));
        rows.push(row);
    }
    write!(out, "{}", table(&rows))?;
    Ok(())
}

/// `rumor info`.
pub fn info(args: &InfoArgs) -> Result<()> {
    let v = Client::new(&args.client).get("/v1/info")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    write!(out, "{}", info_text(&v))?;
    Ok(())
}

/// `GET /v1/info` for humans: `key: value` lines, then the counters.
pub fn info_text(v: &Value) -> String {
    let s = |x: &Value| match x {
        Value::String(t) => t.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let m = &v["members"];
    let e = &v["encryption"];
    let encryption = if e["enabled"].as_bool() == Some(true) {
        format!(
            "on, mode {} ({} key(s), primary {})",
            s(&e["mode"]),
            s(&e["keys"]),
            s(&e["primary"])
        )
    } else {
        "off".into()
    };
    let tags = v["tags"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = [
        ("name", s(&v["name"])),
        ("addr", s(&v["addr"])),
        ("bind", s(&v["bind"])),
        ("http", s(&v["http"])),
        ("version", s(&v["version"])),
        (
            "protocol",
            format!("{}-{}", s(&v["protocol"]["min"]), s(&v["protocol"]["max"])),
        ),
        ("incarnation", s(&v["incarnation"])),
        ("profile", s(&v["profile"])),
        (
            "members",
            format!(
                "alive={} suspect={} dead={} left={}",
                s(&m["alive"]),
                s(&m["suspect"]),
                s(&m["dead"]),
                s(&m["left"])
            ),
        ),
        ("awareness", s(&v["awareness"])),
        ("propagation", propagation_text(&v["propagation"])),
        ("encryption", encryption),
        ("label", s(&v["label"])),
        ("tags", tags),
    ]
    .into_iter()
    .map(|(k, x)| vec![format!("{k}:"), x])
    .collect();
    let mut out = table(&rows);
    if let Some(stats) = v["stats"].as_object() {
        out.push_str("stats:\n");
        let rows: Vec<Vec<String>> = stats
            .iter()
            .map(|(k, x)| vec![format!("  {k}"), s(x)])
            .collect();
        out.push_str(&table(&rows));
    }
    out
}

/// The propagation line of `rumor info`: the measured 99th percentile of
/// dissemination latency against the budget, and the advice.
fn propagation_text(p: &Value) -> String {
    let secs = |x: &Value| x.as_f64().map_or("-".into(), |v| format!("{:.3} s", v));
    format!(
        "p99 {} over {} write(s), budget {} (quiet {}; {} hops of fanout {}; classic gossip {}): {}",
        secs(&p["measured_p99_seconds"]),
        p["measured_samples"].as_u64().unwrap_or(0),
        secs(&p["budget_seconds"]),
        secs(&p["wave_seconds"]),
        p["eager_hops"],
        p["eager_fanout"],
        secs(&p["classic_seconds"]),
        p["advice"].as_str().unwrap_or("-"),
    )
}

/// The value `rumor kv put` writes from standard input: without one
/// trailing newline (`\n` or `\r\n`), as shell command substitution strips
/// it, unless `raw`.
pub fn stdin_value(mut buf: Vec<u8>, raw: bool) -> Vec<u8> {
    if !raw && buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    buf
}

/// `rumor join`.
pub fn join(args: &JoinArgs) -> Result<()> {
    let v = Client::new(&args.client).send("POST", "/v1/join", json!({ "addrs": args.addrs }))?;
    if args.json {
        println!("{v}");
    } else {
        let n = v.get("joined").and_then(Value::as_u64).unwrap_or(0);
        println!(
            "joined through {n} of {} seed address(es)",
            args.addrs.len()
        );
    }
    Ok(())
}

/// `rumor leave`.
pub fn leave(args: &ClientArgs) -> Result<()> {
    Client::new(args).send("POST", "/v1/leave", json!({}))?;
    println!("the agent left the cluster and is shutting down");
    Ok(())
}

/// `rumor force-leave`.
pub fn force_leave(args: &ForceLeaveArgs) -> Result<()> {
    let body = json!({ "name": args.name, "prune": args.prune, "force": args.force });
    Client::new(&args.client).send("POST", "/v1/force-leave", body)?;
    if args.prune {
        println!(
            "{} marked left and pruned on every member that hears it",
            args.name
        );
    } else {
        println!("{} marked left on every member that hears it", args.name);
    }
    Ok(())
}

/// `rumor event`.
pub fn event(args: &EventArgs) -> Result<()> {
    let body = json!({ "name": args.name, "payload": args.payload.clone().unwrap_or_default() });
    let v = Client::new(&args.client).send("POST", "/v1/event", body)?;
    println!("event {:?} sent (ltime {})", args.name, v["ltime"]);
    Ok(())
}

/// Percent-encode a key for a URL path (`/` kept, so keys read naturally).
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a query value.
fn encode_query(v: &str) -> String {
    encode_path(v).replace('/', "%2F")
}

/// A value of the key-space JSON as text (hex when not UTF-8).
fn value_text(v: &Value) -> String {
    match (v["value"].as_str(), v["value_hex"].as_str()) {
        (Some(t), _) => t.to_string(),
        (None, Some(h)) => format!("0x{h}"),
        _ => match v["values"].as_array() {
            Some(vals) => vals.iter().map(value_text).collect::<Vec<_>>().join(" | "),
            None => String::new(),
        },
    }
}

/// Read an SSE stream, calling `f(event, data)` for each event.
fn follow(client: &Client, path: &str, mut f: impl FnMut(&str, Value) -> Result<()>) -> Result<()> {
    let mut lines = client.stream(path)?;
    let mut event = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines
            .read_line(&mut line)
            .map_err(|e| anyhow!("lost the agent at {}: {e}", client.base))?;
        if n == 0 {
            bail!("the agent at {} closed the event stream", client.base);
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if let Some(e) = l.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(d) = l.strip_prefix("data:") {
            let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
            f(&event, v)?;
        } else if l.is_empty() {
            event.clear();
        }
    }
}

/// `rumor kv ...`.
pub fn kv(op: &KvOp) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match op {
        KvOp::Get(a) => {
            let path = format!("/v1/kv/{}", encode_path(&a.key));
            let Some(v) = Client::new(&a.client).get_opt(&path)? else {
                bail!("no key {:?}", a.key);
            };
            if a.json {
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{}", value_text(&v))?;
            }
        }
        KvOp::Put(a) => {
            let value = match &a.value {
                Some(v) => v.clone().into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                    stdin_value(buf, a.raw)
                }
            };
            let mut path = format!("/v1/kv/{}", encode_path(&a.key));
            if let Some(c) = &a.context {
                path.push_str(&format!("?context={}", encode_query(c)));
            }
            Client::new(&a.client).send_bytes("PUT", &path, &value)?;
            writeln!(out, "{} written", a.key)?;
        }
        KvOp::Del(a) => {
            let path = format!("/v1/kv/{}", encode_path(&a.key));
            let v = Client::new(&a.client).send("DELETE", &path, json!({}))?;
            if a.json {
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{} deleted", a.key)?;
            }
        }
        KvOp::List(a) => {
            let path = format!("/v1/kv?prefix={}", encode_query(&a.prefix));
            let v = Client::new(&a.client).get(&path)?;
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            let mut rows = vec![vec!["KEY".to_string(), "VALUE".to_string()]];
            for e in v.as_array().into_iter().flatten() {
                rows.push(vec![
                    e["key"].as_str().unwrap_or("?").to_string(),
                    value_text(e),
                ]);
            }
            write!(out, "{}", table(&rows))?;
        }
        KvOp::Watch(a) => {
            let client = Client::with_timeout(&a.client, None);
            let path = format!("/v1/kv-watch?prefix={}", encode_query(&a.prefix));
            eprintln!("watching {} (Ctrl-C to stop)", client.base);
            follow(&client, &path, |event, v| {
                if event != "kv" {
                    return Ok(());
                }
                if a.json {
                    writeln!(out, "{v}")?;
                } else if v["deleted"].as_bool() == Some(true) {
                    writeln!(out, "del {}", v["key"].as_str().unwrap_or("?"))?;
                } else {
                    writeln!(
                        out,
                        "put {} {}",
                        v["key"].as_str().unwrap_or("?"),
                        value_text(&v)
                    )?;
                }
                out.flush()?;
                Ok(())
            })?;
        }
        KvOp::Export(a) => kv_export(a)?,
        KvOp::Import(a) => kv_import(a)?,
    }
    Ok(())
}

/// `rumor kv export`: the lines as the agent streams them, to a file
/// (renamed into place only once complete) or standard output.
fn kv_export(a: &KvExportArgs) -> Result<()> {
    let client = Client::with_timeout(&a.client, None);
    let mut lines = Vec::new();
    let mut count = 0usize;
    let mut out = std::io::stdout().lock();
    for line in client.stream("/v1/kv-export")?.lines() {
        let line = line.map_err(|e| anyhow!("export from {} broke off: {e}", client.base))?;
        count += 1;
        match &a.out {
            Some(_) => {
                lines.extend_from_slice(line.as_bytes());
                lines.push(b'\n');
            }
            None => writeln!(out, "{line}")?,
        }
    }
    if let Some(path) = &a.out {
        crate::atomic_file::write(path, &lines)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    }
    eprintln!("exported {count} entries");
    Ok(())
}

/// `rumor kv import`: send the lines in requests under the API's body
/// limit; stop at the first refused request (already sent ones stay).
fn kv_import(a: &KvImportArgs) -> Result<()> {
    let mut text = String::new();
    match a.file.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            text = std::fs::read_to_string(p)
                .map_err(|e| anyhow!("cannot read {}: {e}", p.display()))?
        }
        None => {
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        }
    }
    let client = Client::new(&a.client);
    let budget = crate::http::MAX_BODY * 3 / 4;
    let (mut applied, mut stale, mut refused) = (0u64, 0u64, 0u64);
    let mut chunk = String::new();
    let mut send = |chunk: &mut String| -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let v = client.send_bytes("POST", "/v1/kv-import", chunk.as_bytes())?;
        applied += v["applied"].as_u64().unwrap_or(0);
        stale += v["stale"].as_u64().unwrap_or(0);
        refused += v["refused"].as_u64().unwrap_or(0);
        chunk.clear();
        Ok(())
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > budget {
            send(&mut chunk)?;
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    send(&mut chunk)?;
    println!("imported: {applied} applied, {stale} already known, {refused} refused");
    Ok(())
}

/// `rumor state ...`.
pub fn state(op: &StateOp) -> Result<()> {
    match op {
        StateOp::Set(a) => {
            let path = format!("/v1/state/{}", encode_path(&a.key));
            Client::new(&a.client).send_bytes("PUT", &path, a.value.as_bytes())?;
            println!("{}={}", a.key, a.value);
        }
        StateOp::Del(a) => {
            let path = format!("/v1/state/{}", encode_path(&a.key));
            Client::new(&a.client).send("DELETE", &path, json!({}))?;
            println!("{} deleted", a.key);
        }
    }
    Ok(())
}

/// `rumor agg`.
pub fn agg(args: &AggArgs) -> Result<()> {
    let path = format!("/v1/aggregate/{}", encode_path(&args.name));
    let (code, v) = Client::new(&args.client).get_status(&path)?;
    if args.json {
        println!("{v}");
    } else if code == 202 {
        println!(
            "{}: no estimate yet (now tracked; ask again shortly)",
            args.name
        );
    } else {
        println!(
            "{}: avg={} sum={} count={} min={} max={} converged={} epoch={}",
            args.name,
            v["avg"],
            v["sum"],
            v["count"],
            v["min"],
            v["max"],
            v["converged"],
            v["epoch"]
        );
    }
    Ok(())
}

/// Format one SSE `user` event for humans.
pub fn user_line(data: &Value) -> String {
    let ms = data["time_ms"].as_u64().unwrap_or(0);
    let secs = ms / 1000;
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "{h:02}:{mi:02}:{s:02}.{:03}Z {:<15} {} from {} ltime={} {}",
        ms % 1000,
        "user",
        data["name"].as_str().unwrap_or("?"),
        data["origin"].as_str().unwrap_or("?"),
        data["ltime"],
        data["payload"].as_str().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

/// Format one SSE `member` event for humans.
pub fn monitor_line(data: &Value) -> String {
    let m = &data["member"];
    let ms = data["time_ms"].as_u64().unwrap_or(0);
    let secs = ms / 1000;
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let tags = m["tags"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!(
        "{h:02}:{mi:02}:{s:02}.{:03}Z {:<15} {} {} {} inc={} {}",
        ms % 1000,
        data["type"].as_str().unwrap_or("?"),
        m["name"].as_str().unwrap_or("?"),
        m["addr"].as_str().unwrap_or("?"),
        m["status"].as_str().unwrap_or("?"),
        m["incarnation"],
        tags
    )
    .trim_end()
    .to_string()
}

/// `rumor monitor`.
pub fn monitor(args: &MonitorArgs) -> Result<()> {
    let client = Client::with_timeout(&args.client, None);
    eprintln!("monitoring {} (Ctrl-C to stop)", client.base);
    let mut out = std::io::stdout().lock();
    let path = match args.since {
        Some(id) => format!("/v1/events?since={id}"),
        None => "/v1/events".to_string(),
    };
    follow(&client, &path, |event, v| {
        let text = match event {
            "member" => monitor_line(&v),
            "user" => user_line(&v),
            "lagged" => {
                eprintln!(
                    "({} events missed: no longer kept by the agent, or this monitor fell behind)",
                    v["missed"]
                );
                return Ok(());
            }
            _ => return Ok(()),
        };
        if args.json {
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
        Ok(())
    })
}

/// `rumor tags ...`.
pub fn tags(op: &TagsOp) -> Result<()> {
    let (client, body) = match op {
        TagsOp::Set(a) => {
            let mut set = serde_json::Map::new();
            for t in &a.tags {
                let (k, v) = parse_tag(t).map_err(anyhow::Error::msg)?;
                set.insert(k, Value::String(v));
            }
            (&a.client, json!({ "set": set }))
        }
        TagsOp::Del(a) => (&a.client, json!({ "delete": a.keys })),
    };
    let v = Client::new(client).send("PUT", "/v1/tags", body)?;
    let tags: std::collections::BTreeMap<String, String> =
        serde_json::from_value(v["tags"].clone()).unwrap_or_default();
    println!("tags: {}", tags_text(&tags));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_stripped() {
        assert_eq!(stdin_value(b"v\n".to_vec(), false), b"v");
        assert_eq!(stdin_value(b"v\r\n".to_vec(), false), b"v");
        assert_eq!(stdin_value(b"v\n\n".to_vec(), false), b"v\n");
        assert_eq!(stdin_value(b"v".to_vec(), false), b"v");
        assert_eq!(stdin_value(b"v\n".to_vec(), true), b"v\n");
        assert_eq!(stdin_value(Vec::new(), false), b"");
    }

    #[test]
    fn table_aligns() {
        let t = table(&[
            vec!["NAME".into(), "ADDRESS".into(), "TAGS".into()],
            vec!["a-long-name".into(), "1.2.3.4:5".into(), "".into()],
        ]);
        assert_eq!(t, "NAME         ADDRESS    TAGS\na-long-name  1.2.3.4:5\n");
    }

    #[test]
    fn monitor_formats() {
        let v = json!({"type":"member-join","time_ms":3_723_004u64,"member":{"name":"b","addr":"127.0.0.1:2","status":"alive","incarnation":1,"tags":{"r":"x"}}});
        assert_eq!(
            monitor_line(&v),
            "01:02:03.004Z member-join     b 127.0.0.1:2 alive inc=1 r=x"
        );
    }
}
