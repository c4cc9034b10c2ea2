//! The agent's last hour in numbers: a bounded ring of samples of the node,
//! one every `timeseries_interval` (10 s by default: 360 points are one
//! hour), kept in memory by the agent itself (no external store). Each
//! point holds the time, the members by status and the rates over the
//! interval before it (suspicions, failures and events per minute, bytes
//! per second in and out), computed when the sample is taken from the
//! node's cumulative counters and the event history's count. A counter
//! that went down is read as reset to zero (as Prometheus' `rate` does):
//! no rate is ever negative and nothing underflows. `GET /v1/timeseries`
//! serves the ring; the dashboard's "Last hour" panel draws it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{ClusterError, SharedCluster, Stats};
use crate::history::History;
use crate::http::{epoch_ms, ApiResult};
use crate::http_access::Reader;

/// Time between two samples when the configuration says nothing.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The span the ring covers: its capacity is this over the interval.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Shortest interval allowed (at most 3600 points in the ring).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Longest interval allowed (at least 6 points in the ring).
pub const MAX_INTERVAL: Duration = Duration::from_secs(600);

/// Check a configured interval: the one-line error names the setting.
pub fn check_interval(d: Duration) -> anyhow::Result<Duration> {
    if d < MIN_INTERVAL || d > MAX_INTERVAL {
        anyhow::bail!(
            "timeseries_interval must be between 1s and 10m (e.g. \"10s\"), got {}ms",
            d.as_millis()
        );
    }
    Ok(d)
}

/// Members by status, named as the API's `status` field and
/// `rumor_members{status}` name them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Members {
    /// Alive.
    pub alive: usize,
    /// Suspected.
    pub suspect: usize,
    /// Declared failed, still remembered.
    pub dead: usize,
    /// Left, still remembered.
    pub left: usize,
}

/// The cumulative counters the rates are computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Members this node began to suspect.
    pub suspicions: u64,
    /// Members declared dead, as seen here.
    pub deaths: u64,
    /// Bytes received: UDP datagrams and stream connections.
    pub bytes_in: u64,
    /// Bytes sent: UDP datagrams and stream frames.
    pub bytes_out: u64,
    /// Member and user events recorded in the event history.
    pub events: u64,
}

/// One reading of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Wall-clock time, ms since the Unix epoch (what the points show).
    pub t_ms: u64,
    /// Monotonic time in ms from any fixed origin (what rates divide by,
    /// so that a stepped wall clock cannot make a rate negative or huge).
    pub mono_ms: u64,
    /// Members by status.
    pub members: Members,
    /// The cumulative counters.
    pub counters: Counters,
}

impl Sample {
    /// A sample of `stats` with `events` events recorded so far.
    pub fn of(stats: &Stats, events: u64, t_ms: u64, mono_ms: u64) -> Sample {
        let m = &stats.members;
        let t = &stats.transport;
        Sample {
            t_ms,
            mono_ms,
            members: Members {
                alive: m.alive,
                suspect: m.suspect,
                dead: m.dead,
                left: m.left,
            },
            counters: Counters {
                suspicions: stats.core.suspicions,
                deaths: stats.core.deaths,
                bytes_in: t.udp_bytes_in.saturating_add(t.stream_bytes_in),
                bytes_out: t.udp_bytes_out.saturating_add(t.stream_bytes_out),
                events,
            },
        }
    }
}

/// Rates over the interval between two samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rates {
    /// Suspicions begun here, per minute.
    pub suspicions_per_min: f64,
    /// Members declared failed, per minute.
    pub failures_per_min: f64,
    /// Bytes received per second (UDP and streams).
    pub bytes_in_per_s: f64,
    /// Bytes sent per second (UDP and streams).
    pub bytes_out_per_s: f64,
    /// Member and user events per minute.
    pub events_per_min: f64,
}

/// How much a counter grew from `prev` to `cur`; a decrease is a reset to
/// zero, so the growth is `cur` itself.
fn growth(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        cur
    }
}

/// `x` rounded to two decimals (the JSON stays short).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Rates {
    /// The rates from `prev` to `cur`; `None` when no time passed between
    /// them (or the monotonic clock went back, which it should not).
    pub fn between(prev: &Sample, cur: &Sample) -> Option<Rates> {
        let ms = cur.mono_ms.checked_sub(prev.mono_ms).filter(|&d| d > 0)? as f64;
        let (p, c) = (&prev.counters, &cur.counters);
        let per_min = |a, b| round2(growth(a, b) as f64 * 60_000.0 / ms);
        let per_s = |a, b| round2(growth(a, b) as f64 * 1000.0 / ms);
        Some(Rates {
            suspicions_per_min: per_min(p.suspicions, c.suspicions),
            failures_per_min: per_min(p.deaths, c.deaths),
            bytes_in_per_s: per_s(p.bytes_in, c.bytes_in),
            bytes_out_per_s: per_s(p.bytes_out, c.bytes_out),
            events_per_min: per_min(p.events, c.events),
        })
    }
}

/// One point of the series, as `GET /v1/timeseries` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// When the sample was taken, ms since the Unix epoch.
    pub t: u64,
    /// Members by status.
    pub members: Members,
    /// Rates over the interval before this point; null fields for the
    /// agent's first sample, which has no interval before it.
    #[serde(flatten, serialize_with = "rates_or_nulls")]
    pub rates: Option<Rates>,
}

fn rates_or_nulls<S: serde::Serializer>(r: &Option<Rates>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match r {
        Some(r) => r.serialize(s),
        None => {
            let mut m = s.serialize_map(Some(5))?;
            for k in [
                "suspicions_per_min",
                "failures_per_min",
                "bytes_in_per_s",
                "bytes_out_per_s",
                "events_per_min",
            ] {
                m.serialize_entry(k, &None::<f64>)?;
            }
            m.end()
        }
    }
}

/// The bounded ring of points and the last sample (the next rates' base).
pub struct TimeSeries {
    interval: Duration,
    capacity: usize,
    inner: Mutex<Ring>,
}

struct Ring {
    last: Option<Sample>,
    points: VecDeque<Point>,
}

impl TimeSeries {
    /// An empty series sampled every `interval`, keeping [`WINDOW`] of
    /// points (at least one).
    pub fn new(interval: Duration) -> TimeSeries {
        let ms = interval.as_millis().max(1);
        let capacity = WINDOW.as_millis().div_ceil(ms).max(1);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        TimeSeries {
            interval,
            capacity,
            inner: Mutex::new(Ring {
                last: None,
                points: VecDeque::new(),
            }),
        }
    }

    /// Time between two samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Points kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Add `s` as the newest point (the oldest goes when the ring is full),
    /// its rates computed against the previous sample.
    pub fn record(&self, s: Sample) {
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rates = ring.last.as_ref().and_then(|prev| Rates::between(prev, &s));
        if ring.points.len() == self.capacity {
            ring.points.pop_front();
        }
        ring.points.push_back(Point {
            t: s.t_ms,
            members: s.members,
            rates,
        });
        ring.last = Some(s);
    }

    /// The points kept, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.points.iter().copied().collect()
    }

    /// The answer of `GET /v1/timeseries`.
    pub fn to_json(&self) -> Value {
        json!({
            "interval_ms": self.interval.as_millis() as u64,
            "capacity": self.capacity(),
            "points": self.points(),
        })
    }
}

/// Read the node now: its stats and the event history's count.
async fn sample_now(
    cluster: &SharedCluster,
    history: &History,
    origin: tokio::time::Instant,
) -> Result<Sample, ClusterError> {
    let stats = cluster.stats().await?;
    Ok(Sample::of(
        &stats,
        history.recorded(),
        epoch_ms(SystemTime::now()),
        origin.elapsed().as_millis() as u64,
    ))
}

/// Take the first sample now (so a fresh agent has a point at once), then
/// spawn the task that samples every `series.interval()` until the node
/// stops or the task is aborted (the agent aborts it on exit).
pub async fn start(
    cluster: SharedCluster,
    history: Arc<History>,
    series: Arc<TimeSeries>,
) -> tokio::task::JoinHandle<()> {
    let origin = tokio::time::Instant::now();
    if let Ok(s) = sample_now(&cluster, &history, origin).await {
        series.record(s);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(origin + series.interval(), series.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sample_now(&cluster, &history, origin).await {
                Ok(s) => series.record(s),
                Err(ClusterError::Closed) => break,
                Err(e) => tracing::debug!("time series: no sample this interval: {e}"),
            }
        }
    })
}

/// `GET /v1/timeseries`: the interval and the points, oldest first.
pub async fn get(Reader(st): Reader) -> ApiResult<Json<Value>> {
    Ok(Json(st.timeseries.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sec: u64, c: Counters) -> Sample {
        Sample {
            t_ms: 1_700_000_000_000 + sec * 1000,
            mono_ms: sec * 1000,
            members: Members {
                alive: 3,
                ..Members::default()
            },
            counters: c,
        }
    }

    #[test]
    fn the_ring_keeps_an_hour_and_drops_the_oldest() {
        assert_eq!(TimeSeries::new(DEFAULT_INTERVAL).capacity(), 360);
        assert_eq!(TimeSeries::new(Duration::from_secs(1)).capacity(), 3600);
        assert_eq!(TimeSeries::new(Duration::from_secs(7)).capacity(), 515);
        assert_eq!(TimeSeries::new(Duration::ZERO).capacity(), 3_600_000);
        let ts = TimeSeries::new(Duration::from_secs(600));
        assert_eq!(ts.capacity(), 6);
        for i in 0..10 {
            ts.record(sample(i * 600, Counters::default()));
        }
        let p = ts.points();
        assert_eq!(p.len(), 6);
        assert_eq!(p[0].t, 1_700_000_000_000 + 4 * 600_000, "the oldest went");
        assert!(p.iter().all(|p| p.rates.is_some()));
    }

    #[test]
    fn rates_come_from_the_counters_growth() {
        let ts = TimeSeries::new(DEFAULT_INTERVAL);
        ts.record(sample(0, Counters::default()));
        ts.record(sample(
            10,
            Counters {
                suspicions: 2,
                deaths: 1,
                bytes_in: 15_000,
                bytes_out: 25_005,
                events: 5,
            },
        ));
        let p = ts.points();
        assert_eq!(p[0].rates, None, "the first sample has no interval");
        assert_eq!(
            p[1].rates,
            Some(Rates {
                suspicions_per_min: 12.0,
                failures_per_min: 6.0,
                bytes_in_per_s: 1500.0,
                bytes_out_per_s: 2500.5,
                events_per_min: 30.0,
            })
        );
        let v = ts.to_json();
        assert_eq!(v["interval_ms"], 10_000);
        assert_eq!(v["points"][0]["members"]["alive"], 3);
        assert_eq!(v["points"][0]["events_per_min"], Value::Null);
        assert_eq!(v["points"][1]["failures_per_min"], 6.0);
    }

    #[test]
    fn a_counter_that_goes_down_is_a_reset_not_an_underflow() {
        let big = Counters {
            suspicions: u64::MAX,
            deaths: 100,
            bytes_in: 1_000_000,
            bytes_out: 1_000_000,
            events: 50,
        };
        let small = Counters {
            suspicions: 0,
            deaths: 1,
            bytes_in: 1000,
            bytes_out: 0,
            events: 0,
        };
        let r = Rates::between(&sample(0, big), &sample(60, small)).expect("a minute passed");
        assert_eq!(r.suspicions_per_min, 0.0);
        assert_eq!(r.failures_per_min, 1.0);
        assert!((r.bytes_in_per_s - 1000.0 / 60.0).abs() < 0.01, "{r:?}");
        assert_eq!(r.bytes_out_per_s, 0.0);
        assert_eq!(r.events_per_min, 0.0);
        // The full range of a counter is no overflow either.
        let r = Rates::between(
            &sample(0, Counters::default()),
            &sample(
                1,
                Counters {
                    bytes_out: u64::MAX,
                    ..Counters::default()
                },
            ),
        )
        .unwrap();
        assert!(r.bytes_out_per_s.is_finite() && r.bytes_out_per_s > 0.0);
    }

    #[test]
    fn no_time_passed_or_the_clock_went_back_gives_no_rate() {
        let a = sample(5, Counters::default());
        let b = sample(
            5,
            Counters {
                events: 3,
                ..Counters::default()
            },
        );
        assert_eq!(Rates::between(&a, &b), None);
        assert_eq!(Rates::between(&b, &sample(4, Counters::default())), None);
    }

    #[test]
    fn intervals_outside_1s_to_10m_are_one_line_errors() {
        for bad in [
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_secs(601),
        ] {
            let e = check_interval(bad).unwrap_err().to_string();
            assert!(
                e.contains("timeseries_interval") && !e.contains('\n'),
                "{e}"
            );
        }
        assert!(check_interval(Duration::from_secs(1)).is_ok());
        assert!(check_interval(MAX_INTERVAL).is_ok());
    }

    /// An hour at the default interval, with counters of a busy node:
    /// how large `GET /v1/timeseries` gets.
    #[test]
    fn an_hour_of_points_stays_small() {
        let ts = TimeSeries::new(DEFAULT_INTERVAL);
        let mut c = Counters::default();
        for i in 0..400u64 {
            c.suspicions += i % 3;
            c.deaths += i % 7 / 6;
            c.bytes_in += 123_457 + i * 37;
            c.bytes_out += 98_765 + i * 41;
            c.events += i % 5;
            let mut s = sample(i * 10, c);
            s.members = Members {
                alive: 4987,
                suspect: 3,
                dead: 12,
                left: 1,
            };
            ts.record(s);
        }
        let text = ts.to_json().to_string();
        assert_eq!(ts.points().len(), 360);
        eprintln!("GET /v1/timeseries with 360 points: {} bytes", text.len());
        assert!(text.len() < 100_000, "{} bytes", text.len());
    }
}
