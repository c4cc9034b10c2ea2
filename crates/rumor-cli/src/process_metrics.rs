//! The agent process's own metrics, read from `/proc/self` at each scrape:
//! the standard `process_*` families of the Prometheus client libraries
//! (same names, same units). Linux only; elsewhere, or when a file cannot
//! be read, the families are left out silently.
//!
//! Clock ticks are taken as 100 a second (`USER_HZ`, what the kernel
//! reports in `/proc` on every architecture rumor runs on; the Prometheus
//! Go client's procfs assumes the same).

use rumor::metrics::{Family, Kind};

/// `/proc` counts CPU time and start time in ticks of 1/`USER_HZ` s.
const USER_HZ: f64 = 100.0;

/// CPU time used.
pub const CPU_SECONDS: Family = Family {
    name: "process_cpu_seconds_total",
    kind: Kind::Counter,
    labels: &[],
    help: "CPU time the agent process has used, user and system, in seconds.",
};

/// Resident set size.
pub const RESIDENT_MEMORY: Family = Family {
    name: "process_resident_memory_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "Memory of the agent process resident in RAM, in bytes.",
};

/// Virtual memory size.
pub const VIRTUAL_MEMORY: Family = Family {
    name: "process_virtual_memory_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "Virtual memory the agent process has mapped, in bytes.",
};

/// Open file descriptors.
pub const OPEN_FDS: Family = Family {
    name: "process_open_fds",
    kind: Kind::Gauge,
    labels: &[],
    help: "File descriptors the agent process has open (sockets included).",
};

/// The limit on open file descriptors.
pub const MAX_FDS: Family = Family {
    name: "process_max_fds",
    kind: Kind::Gauge,
    labels: &[],
    help: "Most file descriptors the agent process may open (its soft limit).",
};

/// Start time.
pub const START_TIME: Family = Family {
    name: "process_start_time_seconds",
    kind: Kind::Gauge,
    labels: &[],
    help: "When the agent process started, in seconds since the Unix epoch.",
};

/// Every process family, in the order they are read.
pub const FAMILIES: &[Family] = &[
    CPU_SECONDS,
    RESIDENT_MEMORY,
    VIRTUAL_MEMORY,
    OPEN_FDS,
    MAX_FDS,
    START_TIME,
];

/// The process families that could be read now, with their values.
pub fn read() -> Vec<(Family, f64)> {
    let mut out = Vec::new();
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(parse_stat);
    if let Some(s) = stat {
        out.push((CPU_SECONDS, (s.utime + s.stime) as f64 / USER_HZ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kb) = status_kb(&status, "VmRSS:") {
        out.push((RESIDENT_MEMORY, (kb * 1024) as f64));
    }
    if let Some(s) = stat {
        out.push((VIRTUAL_MEMORY, s.vsize as f64));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle read_dir holds is one of them.
        let n = dir.count().saturating_sub(1);
        out.push((OPEN_FDS, n as f64));
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(n) = max_open_files(&limits) {
        out.push((MAX_FDS, n));
    }
    let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let (Some(s), Some(btime)) = (stat, boot_time(&boot)) {
        out.push((START_TIME, btime as f64 + s.starttime as f64 / USER_HZ));
    }
    out
}

/// The fields of `/proc/self/stat` the families need.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

/// Parse `/proc/self/stat`: fields counted from 1; the second, the
/// command name in parentheses, may itself hold spaces and parentheses,
/// so the fields after it are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (the state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
    })
}

/// The value of a `kB` line of `/proc/self/status`.
fn status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`
/// (`unlimited`: +Inf).
fn max_open_files(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(f64::INFINITY),
        n => n.parse::<u64>().ok().map(|n| n as f64),
    }
}

/// The boot time (`btime`, seconds since the epoch) in `/proc/stat`.
fn boot_time(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis in it.
        let text = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 987654321 2000 18446744073709551615";
        let s = parse_stat(text).expect("parsed");
        assert_eq!(
            s,
            Stat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321
            }
        );
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn status_limits_and_boot_time_lines_are_read() {
        let status = "Name:\trumor\nVmSize:\t  20480 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(8192));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), Some(f64::INFINITY));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_on_linux() {
        let read = read();
        let names: Vec<&str> = read.iter().map(|(f, _)| f.name).collect();
        let all: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(names, all);
        let get = |f: Family| read.iter().find(|(g, _)| *g == f).map(|(_, v)| *v);
        assert!(get(RESIDENT_MEMORY) > Some(0.0));
        assert!(get(OPEN_FDS) >= Some(1.0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let start = get(START_TIME).unwrap_or(0.0);
        assert!(start > now - 3600.0 && start <= now + 1.0, "{start} {now}");
    }
}
