//! Usage reports (`GET /admin/usage`, SPEC section 11) from the sled journal: a year of hourly
//! records of many licenses, merged into cells once, then read back as a year by month and by
//! day, and a month by hour.
//!
//! Run with `cargo bench --bench usage`. `LEASEHOLD_BENCH_USAGE_LICENSES` sets how many licenses
//! were used every hour of the year (default 100: 876,000 closed records);
//! `LEASEHOLD_BENCH_QUICK=1` makes a smoke run (3 licenses over 30 days, shorter measurements).

use criterion::{criterion_group, Criterion};
use leasehold::decide::LicenseEvent;
use leasehold::ids::{ConsumerId, LicenseId, LicenseeId};
use leasehold::journal::{Change, Journal, JournalEntry};
use leasehold::usage::{Granularity, GroupBy, OpenUsage, UsageCounts, UsageQuery, UsageRecord};
use leasehold::Timestamp;
use leasehold_persistence::{DurabilityMode, JournalConfig, SledJournal};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2026-01-01T00:00:00Z.
const YEAR_START_MS: i64 = 1_767_225_600_000;
const HOUR_MS: i64 = 3_600_000;

fn quick() -> bool {
    std::env::var_os("LEASEHOLD_BENCH_QUICK").is_some()
}

fn licenses() -> u128 {
    let default = if quick() { 3 } else { 100 };
    std::env::var("LEASEHOLD_BENCH_USAGE_LICENSES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn hours() -> i64 {
    if quick() {
        30 * 24
    } else {
        365 * 24
    }
}

/// The closed record of license `license` for hour `hour` of the year: ten licensees, one
/// consumer per license.
fn record(license: u128, hour: i64) -> JournalEntry {
    let counts = UsageCounts { peak_seats: 3, grants: 7, denials: 1, uses: 0, use_time_s: 0 };
    let record = UsageRecord {
        license: LicenseId(uuid::Uuid::from_u128(license + 1)),
        licensee: LicenseeId(uuid::Uuid::from_u128(1_000_000 + license % 10)),
        product: Arc::from("cad"),
        usage: OpenUsage {
            hour: Timestamp::from_millis(YEAR_START_MS + hour * HOUR_MS),
            totals: counts,
            consumers: [(ConsumerId(uuid::Uuid::from_u128(2_000_000 + license)), counts)].into_iter().collect(),
        },
    };
    let license = record.license;
    let at = Timestamp::from_millis(YEAR_START_MS + (hour + 1) * HOUR_MS);
    JournalEntry { at, change: Change::License { license, event: LicenseEvent::UsageClosed(Box::new(record)) } }
}

fn reports(c: &mut Criterion) {
    let (licenses, hours) = (licenses(), hours());
    let dir = tempfile::tempdir().expect("a scratch directory");
    let config = JournalConfig { snapshot_every_entries: None, ..JournalConfig::with_durability(DurabilityMode::Sync) };
    let (journal, _) = SledJournal::open(dir.path(), config).expect("a journal");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    for hour in 0..hours {
        // An hour's records in flight at once, so that group commit writes them in few flushes.
        let pending: Vec<_> = (0..licenses).map(|license| journal.append(&record(license, hour))).collect();
        for durability in pending {
            rt.block_on(durability.wait()).expect("a durable record");
        }
    }
    let end = Timestamp::from_millis(YEAR_START_MS + hours * HOUR_MS);
    let query = |granularity, group_by, from: Timestamp| UsageQuery {
        from,
        to: end,
        granularity,
        group_by,
        license: None,
        licensee: None,
    };
    let year = Timestamp::from_millis(YEAR_START_MS);
    let merging = Instant::now();
    let rows = journal.usage(&query(Granularity::Month, GroupBy::License, year)).expect("a report");
    println!(
        "merging {} closed records of {licenses} licenses into cells took {:.2} s",
        licenses as i64 * hours,
        merging.elapsed().as_secs_f64()
    );
    let mut months = 0;
    let mut month = year;
    while month < end {
        months += 1;
        month = Granularity::Month.next(month);
    }
    assert_eq!(rows.len() as u128, licenses * months, "a row per license and month");
    assert!(rows.iter().all(|r| r.counts.peak_seats == 3));

    let mut group = c.benchmark_group(format!("usage_report_{licenses}_licenses_{hours}_hours"));
    if quick() {
        group.warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_millis(300)).sample_size(10);
    } else {
        group.sample_size(10);
    }
    let report = |q: UsageQuery| journal.usage(&q).expect("a report").len();
    group.bench_function("year_by_month_per_license", |b| {
        b.iter(|| report(query(Granularity::Month, GroupBy::License, year)))
    });
    group.bench_function("year_by_day_per_licensee", |b| {
        b.iter(|| report(query(Granularity::Day, GroupBy::Licensee, year)))
    });
    let last_month = Granularity::Month.period_of(Timestamp::from_millis(end.as_millis() - 1));
    group.bench_function("month_by_hour_per_product", |b| {
        b.iter(|| report(query(Granularity::Hour, GroupBy::Product, last_month)))
    });
    group.finish();
}

criterion_group!(benches, reports);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
