//! `rumor members --name REGEX --tag KEY=REGEX`: which members to list.
//!
//! The filter runs in the client, on the list `GET /v1/members` returns
//! (the agent compiles no regular expression a caller sends it). Each
//! expression must match the whole name or tag value (it is anchored, as
//! Serf's are): `--name 'web-.*'`, `--tag 'zone=eu-.*'`. A member without
//! the tag does not match. Every given filter must match.

use std::fmt;

use regex::{Regex, RegexBuilder};

use crate::http::MemberJson;

/// Largest compiled expression, in bytes: generous for any member filter.
const SIZE_LIMIT: usize = 1 << 20;

/// A filter that could not be built: a usage error (exit status 2).
#[derive(Debug)]
pub struct BadFilter(pub String);

impl fmt::Display for BadFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadFilter {}

/// Compiled `--name` and `--tag` filters.
#[derive(Debug, Default)]
pub struct MemberFilter {
    name: Option<Regex>,
    tags: Vec<(String, Regex)>,
}

/// Compile `expr` anchored at both ends; the error is one line.
pub fn compile(what: &str, expr: &str) -> Result<Regex, BadFilter> {
    RegexBuilder::new(&format!("^(?:{expr})$"))
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| BadFilter(format!("bad {what} regex {expr:?}: {}", one_line(&e))))
}

/// The regex crate's message without the multi-line pointer to the error.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl MemberFilter {
    /// Build from `--name` and the `--tag KEY=REGEX` values.
    pub fn new(name: Option<&str>, tags: &[String]) -> Result<Self, BadFilter> {
        let name = name.map(|n| compile("--name", n)).transpose()?;
        let tags = tags
            .iter()
            .map(|t| match t.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Ok((k.trim().to_string(), compile(&format!("--tag {k}"), v)?))
                }
                _ => Err(BadFilter(format!("bad --tag {t:?}: expected KEY=REGEX"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(MemberFilter { name, tags })
    }

    /// Whether `m` passes every filter.
    pub fn matches(&self, m: &MemberJson) -> bool {
        self.name.as_ref().is_none_or(|r| r.is_match(&m.name))
            && self
                .tags
                .iter()
                .all(|(k, r)| m.tags.get(k).is_some_and(|v| r.is_match(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, tags: &[(&str, &str)]) -> MemberJson {
        MemberJson {
            name: name.into(),
            addr: "127.0.0.1:1".into(),
            status: "alive".into(),
            incarnation: 1,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            last_change_ms: None,
            state: Default::default(),
            protocol: None,
            rtt_ms: None,
        }
    }

    #[test]
    fn anchored_name_and_tags() {
        let f = MemberFilter::new(Some("web-[0-9]+"), &["zone=eu-.*".into()]).unwrap();
        assert!(f.matches(&m("web-1", &[("zone", "eu-1")])));
        assert!(!f.matches(&m("xweb-1", &[("zone", "eu-1")])));
        assert!(!f.matches(&m("web-1x", &[("zone", "eu-1")])));
        assert!(!f.matches(&m("web-1", &[("zone", "us-1")])));
        assert!(!f.matches(&m("web-1", &[])));
        assert!(MemberFilter::default().matches(&m("x", &[])));
        // An exact value still matches itself.
        let f = MemberFilter::new(None, &["role=db".into()]).unwrap();
        assert!(f.matches(&m("a", &[("role", "db")])));
    }

    #[test]
    fn bad_expressions_are_one_line() {
        let e = MemberFilter::new(Some("web-("), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("bad --name regex \"web-(\"") && !e.contains('\n'),
            "{e}"
        );
        let e = MemberFilter::new(None, &["role=[".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tag role") && !e.contains('\n'), "{e}");
        assert!(MemberFilter::new(None, &["novalue".into()]).is_err());
    }
}
