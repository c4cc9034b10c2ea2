//! The workload: kv writes and deletes, user events, per-node state and tag
//! changes sent to random live agents, and the record of which the agents
//! acknowledged (what the checker holds them to).

use crate::agents::Agents;
use crate::http;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::json;

/// An acknowledged kv write.
#[derive(Clone, Debug, Serialize)]
pub struct Put {
    /// The key (`wl/N`: each written once).
    pub key: String,
    /// The value.
    pub value: String,
    /// The host whose agent acknowledged it.
    pub host: usize,
    /// When (seconds from the start).
    pub at: f64,
}

/// An acknowledged user event.
#[derive(Clone, Debug, Serialize)]
pub struct Sent {
    /// Its unique name.
    pub name: String,
    /// The sender.
    pub host: usize,
    /// When.
    pub at: f64,
}

/// What the agents acknowledged.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    /// kv writes.
    pub puts: Vec<Put>,
    /// kv deletes of keys in `puts` (key, host, when).
    pub deletes: Vec<(String, usize, f64)>,
    /// User events.
    pub events: Vec<Sent>,
    /// Each host's last acknowledged `load` state value and when.
    pub state: Vec<Option<(String, f64)>>,
    /// Each host's last acknowledged `gen` tag and when.
    pub tags: Vec<Option<(String, f64)>>,
    /// Requests that failed or were refused.
    pub unacknowledged: u64,
    counter: u64,
}

impl Record {
    /// An empty record for `hosts` hosts.
    pub fn new(hosts: usize) -> Record {
        Record {
            state: vec![None; hosts],
            tags: vec![None; hosts],
            ..Record::default()
        }
    }

    /// Sets host `host`'s `load` state value; whether it was acknowledged.
    pub fn set_load(&mut self, agents: &Agents, host: usize, value: u32, at: f64) -> bool {
        let v = value.to_string();
        let r = http::json(agents.hosts.ns(host), "PUT", "/v1/state/load", v.as_bytes());
        let done = r.is_ok_and(|(s, _)| s == 200);
        if done {
            self.state[host] = Some((v, at));
        }
        done
    }

    /// Sends one random operation to host `host`'s agent at `at`.
    pub fn op(&mut self, agents: &Agents, host: usize, at: f64, seed: u64, rng: &mut impl Rng) {
        self.counter += 1;
        let n = self.counter;
        let ns = agents.hosts.ns(host);
        let ok = |r: anyhow::Result<(u16, serde_json::Value)>| r.is_ok_and(|(s, _)| s == 200);
        let acked = match rng.random_range(0..20) {
            0..8 => {
                let (key, value) = (format!("wl/{n}"), format!("v{n}-s{seed}"));
                let done = ok(http::json(
                    ns,
                    "PUT",
                    &format!("/v1/kv/{key}"),
                    value.as_bytes(),
                ));
                if done {
                    self.puts.push(Put {
                        key,
                        value,
                        host,
                        at,
                    });
                }
                done
            }
            // Only a key this agent already holds: the delete then comes
            // after the write (a delete of a key it has not seen yet races
            // the write, and last-write-wins may rightly keep the write).
            8..10 => match self.puts.choose(rng).map(|p| p.key.clone()) {
                Some(key) if ok(http::json(ns, "GET", &format!("/v1/kv/{key}"), b"")) => {
                    let done = ok(http::json(ns, "DELETE", &format!("/v1/kv/{key}"), b""));
                    if done {
                        self.deletes.push((key, host, at));
                    }
                    done
                }
                _ => true,
            },
            10..14 => {
                let name = format!("ev-{n}");
                let body = json!({ "name": name, "payload": format!("s{seed}") }).to_string();
                let done = ok(http::json(ns, "POST", "/v1/event", body.as_bytes()));
                if done {
                    self.events.push(Sent { name, host, at });
                }
                done
            }
            14..17 => self.set_load(agents, host, rng.random_range(0..1000), at),
            _ => {
                let v = format!("{n}");
                let body = json!({ "set": { "gen": v } }).to_string();
                let done = ok(http::json(ns, "PUT", "/v1/tags", body.as_bytes()));
                if done {
                    self.tags[host] = Some((v, at));
                }
                done
            }
        };
        if !acked {
            self.unacknowledged += 1;
        }
    }
}
