//! `rumor keys`: the keyring of every member (or, with `--local`, of the
//! agent the CLI talks to). Cluster-wide operations are the built-in query
//! [`KEYS_QUERY`] through `POST /v1/query`: every member applies the
//! operation, writes its keyring file back and answers with its keys'
//! fingerprints. The command reports how many members hold each key, and
//! every member that refused or did not answer; it exits 1 unless every
//! member that is not known to have left answered with success.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::cli::{ClientArgs, KeysOp};
use crate::client::Client;
use crate::keyring_sync::KEYS_QUERY;

/// `rumor keys ...`. Keys are named by fingerprint in what is printed.
pub fn keys(op: &KeysOp) -> Result<()> {
    let fp = |k: &str| -> Result<String> {
        Ok(crate::http::key_fingerprint(
            &crate::cluster::normalize_key(k)?,
        ))
    };
    match op {
        KeysOp::Gen(g) => {
            let hex = crate::cluster::generate_key()?;
            if g.base64 {
                let bytes: Vec<u8> = (0..32)
                    .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect();
                println!(
                    "{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                );
            } else {
                println!("{hex}");
            }
        }
        KeysOp::Fingerprint(a) => println!("{}", fp(&a.key)?),
        KeysOp::Install(k) | KeysOp::Use(k) | KeysOp::Remove(k) => {
            let (verb, done) = match op {
                KeysOp::Install(_) => ("install", "installed"),
                KeysOp::Use(_) => ("use", "made primary"),
                _ => ("remove", "removed"),
            };
            let key = crate::cluster::normalize_key(&k.key)?;
            let print = fp(&key)?;
            if k.local {
                let c = Client::new(&k.client);
                match verb {
                    "remove" => c.send("DELETE", "/v1/keys", json!({ "key": key }))?,
                    _ => c.send("POST", "/v1/keys", json!({ "op": verb, "key": key }))?,
                };
                println!("key {print} {done} on this agent");
                return Ok(());
            }
            let r = ask(&k.client, verb, Some(&key))?;
            println!(
                "key {print} {done} on {} of {} members",
                r.ok.len(),
                r.expected.len()
            );
            r.finish()?;
        }
        KeysOp::List(l) => {
            if l.local {
                let v = Client::new(&l.client).get("/v1/keys")?;
                if l.json {
                    println!("{v}");
                } else {
                    print_local(&v);
                }
                return Ok(());
            }
            let r = ask(&l.client, "list", None)?;
            if l.json {
                println!("{}", r.json());
            } else {
                r.print_counts();
            }
            r.finish()?;
        }
    }
    Ok(())
}

fn print_local(v: &Value) {
    let primary = v["primary"].as_str().unwrap_or("");
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        println!("no keys installed (gossip is not encrypted)");
        return;
    }
    println!("FINGERPRINT");
    for k in keys {
        let k = k.as_str().unwrap_or("");
        println!("{k}{}", if k == primary { "  (primary)" } else { "" });
    }
}

/// What the members answered to one cluster-wide keyring request.
struct Answers {
    /// Members that should answer: all but those known to have left.
    expected: BTreeSet<String>,
    /// Members that applied it, with their keyring (fingerprints).
    ok: BTreeMap<String, Value>,
    /// Members that refused it, with why.
    refused: BTreeMap<String, String>,
}

/// Send `op` (with `key`) to every member and collect the answers.
fn ask(client: &ClientArgs, op: &str, key: Option<&str>) -> Result<Answers> {
    let c = Client::with_timeout(client, None);
    let members = c.get("/v1/members")?;
    let expected: BTreeSet<String> = members
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m["status"] != "left")
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let payload = json!({ "op": op, "key": key }).to_string();
    let body = json!({ "name": KEYS_QUERY, "payload": payload, "ack": false });
    let mut ok = BTreeMap::new();
    let mut refused = BTreeMap::new();
    for line in c.post_streaming("/v1/query", body)?.lines() {
        let line = line.map_err(|e| anyhow!("the agent's answer broke off: {e}"))?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["type"] != "response" {
            continue;
        }
        let from = v["from"].as_str().unwrap_or("?").to_string();
        let answer: Value = v["payload"]
            .as_str()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        if answer["ok"] == true {
            ok.insert(from, answer);
        } else {
            let why = answer["error"].as_str().unwrap_or("a malformed answer");
            refused.insert(from, why.to_string());
        }
    }
    Ok(Answers {
        expected,
        ok,
        refused,
    })
}

impl Answers {
    /// Members that should have answered and did not.
    fn missing(&self) -> Vec<&String> {
        self.expected
            .iter()
            .filter(|m| !self.ok.contains_key(*m) && !self.refused.contains_key(*m))
            .collect()
    }

    /// Per key fingerprint: members holding it, and holding it as primary.
    fn counts(&self) -> BTreeMap<String, (usize, usize)> {
        let mut c: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for a in self.ok.values() {
            for k in a["keys"].as_array().into_iter().flatten() {
                let k = k.as_str().unwrap_or("").to_string();
                let e = c.entry(k.clone()).or_default();
                e.0 += 1;
                if a["primary"].as_str() == Some(&k) {
                    e.1 += 1;
                }
            }
        }
        c
    }

    fn print_counts(&self) {
        println!(
            "{} of {} members answered",
            self.ok.len(),
            self.expected.len()
        );
        println!("{:<18} {:>8} {:>8}", "FINGERPRINT", "MEMBERS", "PRIMARY");
        for (k, (n, p)) in self.counts() {
            println!("{k:<18} {n:>8} {p:>8}");
        }
    }

    fn json(&self) -> Value {
        let keys: BTreeMap<String, Value> = self
            .counts()
            .into_iter()
            .map(|(k, (n, p))| (k, json!({ "members": n, "primary": p })))
            .collect();
        json!({
            "expected": self.expected.len(),
            "answered": self.ok.len(),
            "keys": keys,
            "refused": self.refused,
            "missing": self.missing(),
        })
    }

    /// Report refusals and silences; an error unless there were none.
    fn finish(&self) -> Result<()> {
        for (m, why) in &self.refused {
            eprintln!("  {m}: {why}");
        }
        let missing = self.missing();
        for m in &missing {
            eprintln!("  {m}: no answer before the query's deadline");
        }
        if !self.refused.is_empty() || !missing.is_empty() {
            bail!(
                "{} member(s) refused and {} did not answer (of {})",
                self.refused.len(),
                missing.len(),
                self.expected.len()
            );
        }
        Ok(())
    }
}
