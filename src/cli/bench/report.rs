//! What `leasehold bench` prints: one row per run (throughput, latency percentiles, errors by
//! kind), the baselines of the same run, and the ratios between them, as text or as JSON.

use super::driver::Measured;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// What was driven: `leasehold`, `hello-world`, `redis-lua`.
    pub target: String,
    /// How: `authz` (Enterprise HTTP), `scale` (Scale HTTP), `tcp`, `http` (hello-world), `resp`.
    pub protocol: String,
    /// The workload: `consume`, `check`, `renew`, `cycle`, `hello`.
    pub workload: String,
    /// Connections, each with one request in flight (or pipelined, for TCP).
    pub connections: usize,
    /// The asked open-loop rate, if any.
    pub rate_per_s: Option<f64>,
    /// Measured requests, errors included.
    pub requests: u64,
    /// Errors among them.
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The measured window in seconds.
    pub duration_s: f64,
    /// Requests per second.
    pub throughput_per_s: f64,
    /// Latency percentiles in microseconds.
    pub latency_us: Percentiles,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
}

impl Run {
    /// The row for `measured`.
    pub fn new(
        target: &str,
        protocol: &str,
        workload: &str,
        connections: usize,
        rate_per_s: Option<f64>,
        measured: &Measured,
    ) -> Run {
        let h = &measured.latency_us;
        Run {
            target: target.to_owned(),
            protocol: protocol.to_owned(),
            workload: workload.to_owned(),
            connections,
            rate_per_s,
            requests: measured.requests,
            errors: measured.error_count(),
            errors_by_kind: measured.errors.clone(),
            duration_s: measured.elapsed.as_secs_f64(),
            throughput_per_s: measured.throughput_per_s(),
            latency_us: Percentiles {
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            },
        }
    }
}

/// A ceiling measured without a client: signatures per second on every core.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// What was measured (`rs256-sign`).
    pub name: String,
    /// Threads used.
    pub threads: usize,
    /// Operations per second: the mean of `samples`.
    pub per_s: f64,
    /// Each measurement, in the order taken (right before and right after the run the ceiling
    /// divides, when that ran).
    pub samples: Vec<f64>,
}

/// A figure derived from the runs (mostly a ratio between two of them), with its target.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The value should be at least this.
    pub at_least: Option<f64>,
    /// The value should be at most this.
    pub at_most: Option<f64>,
}

impl Ratio {
    /// Whether the value meets its target (`None` without one).
    pub fn met(&self) -> Option<bool> {
        match (self.at_least, self.at_most) {
            (None, None) => None,
            (low, high) => Some(low.is_none_or(|l| self.value >= l) && high.is_none_or(|h| self.value <= h)),
        }
    }
}

/// Everything one `leasehold bench` invocation measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The machine: logical CPUs and the operating system.
    pub machine: Machine,
    /// Each run, in the order run.
    pub runs: Vec<Run>,
    /// Ceilings measured without a client.
    pub ceilings: Vec<Ceiling>,
    /// Ratios between the figures above.
    pub ratios: Vec<Ratio>,
    /// Other facts worth keeping with the numbers (memory, restart time, settings).
    pub notes: Vec<String>,
}

/// Where the numbers came from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs the process may use.
    pub cpus: usize,
    /// `std::env::consts::OS` / `ARCH`.
    pub os: String,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

impl Report {
    /// The first run matching `target`, `protocol` and `workload` with no rate set.
    pub fn find(&self, target: &str, protocol: &str, workload: &str) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.target == target && r.protocol == protocol && r.workload == workload && r.rate_per_s.is_none())
    }

    /// The ceiling called `name`.
    pub fn ceiling(&self, name: &str) -> Option<&Ceiling> {
        self.ceilings.iter().find(|c| c.name == name)
    }

    /// Adds a measurement of the ceiling called `name`, whose figure is the mean of them all.
    pub fn add_ceiling_sample(&mut self, name: &str, threads: usize, per_s: f64) {
        let index = self.ceilings.iter().position(|c| c.name == name).unwrap_or_else(|| {
            self.ceilings.push(Ceiling { name: name.into(), threads, per_s, samples: Vec::new() });
            self.ceilings.len() - 1
        });
        let ceiling = &mut self.ceilings[index];
        ceiling.samples.push(per_s);
        ceiling.per_s = ceiling.samples.iter().sum::<f64>() / ceiling.samples.len() as f64;
    }

    /// The report as a text table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "machine: {} CPUs, {}", self.machine.cpus, self.machine.os);
        if !self.runs.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<12} {:<9} {:<16} {:>5} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
                "target",
                "proto",
                "workload",
                "conns",
                "requests",
                "req/s",
                "p50 µs",
                "p90 µs",
                "p99 µs",
                "p99.9",
                "max µs"
            );
            for r in &self.runs {
                let workload = match r.rate_per_s {
                    Some(rate) => format!("{}@{rate:.0}/s", r.workload),
                    None => r.workload.clone(),
                };
                let errors = if r.errors == 0 {
                    "0".to_owned()
                } else {
                    let kinds: Vec<String> = r.errors_by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                    format!("{} ({})", r.errors, kinds.join(", "))
                };
                let _ = writeln!(
                    out,
                    "{:<12} {:<9} {:<16} {:>5} {:>10} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8}  {errors}",
                    r.target,
                    r.protocol,
                    workload,
                    r.connections,
                    r.requests,
                    r.throughput_per_s,
                    r.latency_us.p50,
                    r.latency_us.p90,
                    r.latency_us.p99,
                    r.latency_us.p999,
                    r.latency_us.max,
                );
            }
        }
        for c in &self.ceilings {
            let _ = write!(out, "\nceiling {}: {:.0}/s on {} threads", c.name, c.per_s, c.threads);
            if c.samples.len() > 1 {
                let samples: Vec<String> = c.samples.iter().map(|s| format!("{s:.0}")).collect();
                let _ =
                    write!(out, " (mean of {}, measured right before and after the signed run)", samples.join(", "));
            }
            let _ = writeln!(out);
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(out, "\nratios:");
            for r in &self.ratios {
                let target = match (r.at_least, r.at_most) {
                    (Some(low), _) => format!("target ≥ {low}"),
                    (None, Some(high)) => format!("target ≤ {high}"),
                    (None, None) => String::new(),
                };
                let verdict = match r.met() {
                    Some(true) => format!("({target}: met)"),
                    Some(false) => format!("({target}: MISSED)"),
                    None => String::new(),
                };
                let _ = writeln!(out, "  {:<58} {:>7.3} {verdict}", r.name, r.value);
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}
