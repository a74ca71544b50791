//! Usage reports (SPEC section 11): what each license did each hour, as plain data and pure
//! functions.
//!
//! A license's state keeps an open [`OpenUsage`] for the hour it last changed in, counted by
//! [`crate::decide::LicenseState::apply`] alone, so the actor, recovery and snapshots count
//! alike. Before a change in a later hour, before the license is deleted and when a report is
//! asked for, the actor journals the record as [`crate::decide::LicenseEvent::UsageClosed`]; a
//! journal folds closed records into cells of an hour, a day and a month ([`cells_of`]), and a
//! report sums cells by the group asked for ([`report`]).
//!
//! What each count is:
//! - `grants`: leases issued that open a session or add one (a renewal is not a grant);
//! - `denials`: checkouts the license refused (a check is not counted);
//! - `uses` / `use_time_s`: credit taken by use-count / use-time licenses, counted when the
//!   lease sets it aside; a release that uses less than was set aside gives the rest back, so a
//!   period may count less (even below zero) when an earlier period's lease gave credit back;
//! - `peak_seats`: the most seats taken at once, as seen at each change of the period: a record
//!   opens with the seats held at its first change. A group of several licenses (a licensee, a
//!   product, a consumer on several licenses) reports the sum of its licenses' peaks.

use crate::ids::{ConsumerId, LicenseId, LicenseeId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long cells are kept.
pub const KEEP_DAYS: u64 = 400;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What one license (or one consumer on it) did in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    /// The most seats taken at once.
    pub peak_seats: u64,
    /// Leases granted that are not renewals.
    pub grants: u64,
    /// Checkouts refused.
    pub denials: u64,
    /// Uses taken (use-count licenses).
    pub uses: i64,
    /// Seconds of use taken (use-time licenses).
    pub use_time_s: i64,
}

impl UsageCounts {
    /// Adds `other`, a later part of the same license's period: the peak is the higher one.
    pub fn add_later(&mut self, other: &UsageCounts) {
        self.peak_seats = self.peak_seats.max(other.peak_seats);
        self.add_counts(other);
    }

    /// Adds `other`, another license's counts of the same period: peaks add up.
    pub fn add_beside(&mut self, other: &UsageCounts) {
        self.peak_seats = self.peak_seats.saturating_add(other.peak_seats);
        self.add_counts(other);
    }

    fn add_counts(&mut self, other: &UsageCounts) {
        self.grants = self.grants.saturating_add(other.grants);
        self.denials = self.denials.saturating_add(other.denials);
        self.uses = self.uses.saturating_add(other.uses);
        self.use_time_s = self.use_time_s.saturating_add(other.use_time_s);
    }
}

/// The record a license keeps of the hour it last changed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenUsage {
    /// The hour's start.
    pub hour: Timestamp,
    /// The license's own counts.
    pub totals: UsageCounts,
    /// Each consumer's counts on the license, by consumer (most licenses see one consumer an
    /// hour: it is kept in place, so an open record is one allocation).
    pub consumers: SmallVec<[(ConsumerId, UsageCounts); 1]>,
}

impl OpenUsage {
    /// A record of the hour of `at`, opened with `seats` held and each consumer's seats.
    pub fn open(at: Timestamp, seats: u64, by_consumer: impl Iterator<Item = (ConsumerId, u64)>) -> OpenUsage {
        let mut consumers: SmallVec<[(ConsumerId, UsageCounts); 1]> =
            by_consumer.map(|(c, peak_seats)| (c, UsageCounts { peak_seats, ..UsageCounts::default() })).collect();
        consumers.sort_by_key(|(c, _)| *c);
        let totals = UsageCounts { peak_seats: seats, ..UsageCounts::default() };
        OpenUsage { hour: Granularity::Hour.period_of(at), totals, consumers }
    }

    /// `consumer`'s counts, added when missing.
    pub fn consumer(&mut self, consumer: ConsumerId) -> &mut UsageCounts {
        let at = match self.consumers.binary_search_by_key(&consumer, |(c, _)| *c) {
            Ok(at) => at,
            Err(at) => {
                self.consumers.insert(at, (consumer, UsageCounts::default()));
                at
            }
        };
        &mut self.consumers[at].1
    }
}

/// A closed hour of one license: what the journal keeps and reports are made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The license.
    pub license: LicenseId,
    /// Its licensee.
    pub licensee: LicenseeId,
    /// Its product's name.
    pub product: Arc<str>,
    /// The hour and its counts.
    pub usage: OpenUsage,
}

/// How long a report's periods are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Granularity {
    /// Hours (UTC).
    Hour,
    /// Days (UTC).
    Day,
    /// Calendar months (UTC).
    Month,
}

impl Granularity {
    /// Every granularity, as cells are kept.
    pub const ALL: [Granularity; 3] = [Granularity::Hour, Granularity::Day, Granularity::Month];

    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    /// The granularity called `name`.
    pub fn parse(name: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The start of the period `at` is in.
    pub fn period_of(self, at: Timestamp) -> Timestamp {
        let ms = at.as_millis();
        match self {
            Granularity::Hour => Timestamp::from_millis(ms - ms.rem_euclid(HOUR_MS)),
            Granularity::Day => Timestamp::from_millis(ms - ms.rem_euclid(DAY_MS)),
            Granularity::Month => {
                let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
                Timestamp::from_millis(days_from_civil(year, month, 1) * DAY_MS)
            }
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: Timestamp) -> Timestamp {
        match self {
            Granularity::Hour => start.plus_millis(HOUR_MS),
            Granularity::Day => start.plus_millis(DAY_MS),
            Granularity::Month => {
                let (year, month, _) = civil_from_days(start.as_millis().div_euclid(DAY_MS));
                let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                Timestamp::from_millis(days_from_civil(year, month, 1) * DAY_MS)
            }
        }
    }
}

/// The date of day `days` since 1970-01-01 (proleptic Gregorian): year, month 1-12, day 1-31.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Where a cell belongs: its period, license and consumer (none for the license's own cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    /// The granularity of its period.
    pub granularity: Granularity,
    /// The period's start.
    pub period: Timestamp,
    /// The license.
    pub license: LicenseId,
    /// The consumer, for a consumer's cell.
    pub consumer: Option<ConsumerId>,
}

/// The counts of one license (or one consumer on it) in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCell {
    /// The license's licensee.
    pub licensee: LicenseeId,
    /// The license's product.
    pub product: Arc<str>,
    /// The counts.
    pub counts: UsageCounts,
}

/// The cells a closed record adds to: the license's own and each consumer's, at every
/// granularity.
pub fn cells_of(record: &UsageRecord) -> Vec<(CellKey, UsageCell)> {
    let mut cells = Vec::with_capacity(3 * (1 + record.usage.consumers.len()));
    let own = std::iter::once((None, &record.usage.totals));
    let consumers = record.usage.consumers.iter().map(|(c, counts)| (Some(*c), counts));
    for (consumer, counts) in own.chain(consumers) {
        for granularity in Granularity::ALL {
            let key = CellKey {
                granularity,
                period: granularity.period_of(record.usage.hour),
                license: record.license,
                consumer,
            };
            let cell = UsageCell { licensee: record.licensee, product: Arc::clone(&record.product), counts: *counts };
            cells.push((key, cell));
        }
    }
    cells
}

/// Adds `record` to `cells`.
pub fn fold_record(cells: &mut BTreeMap<CellKey, UsageCell>, record: &UsageRecord) {
    for (key, cell) in cells_of(record) {
        match cells.get_mut(&key) {
            Some(kept) => kept.counts.add_later(&cell.counts),
            None => {
                cells.insert(key, cell);
            }
        }
    }
}

/// What a report rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One row per license and period.
    License,
    /// One row per licensee and period.
    Licensee,
    /// One row per product and period.
    Product,
    /// One row per consumer and period.
    Consumer,
}

impl GroupBy {
    /// The grouping called `name` in the API.
    pub fn parse(name: &str) -> Option<GroupBy> {
        match name {
            "license" => Some(GroupBy::License),
            "licensee" => Some(GroupBy::Licensee),
            "product" => Some(GroupBy::Product),
            "consumer" => Some(GroupBy::Consumer),
            _ => None,
        }
    }
}

/// A report asked for: periods of `granularity` from the one `from` is in up to `to`
/// (excluded), optionally of one license or licensee.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// The earliest time; its whole period is reported.
    pub from: Timestamp,
    /// The end (excluded).
    pub to: Timestamp,
    /// The periods' length.
    pub granularity: Granularity,
    /// The rows' group.
    pub group_by: GroupBy,
    /// Only this license.
    pub license: Option<LicenseId>,
    /// Only this licensee's licenses.
    pub licensee: Option<LicenseeId>,
}

impl UsageQuery {
    /// The first period's start.
    pub fn first_period(&self) -> Timestamp {
        self.granularity.period_of(self.from)
    }

    /// Whether a cell of this query's granularity in `period` is reported.
    pub fn wants_period(&self, period: Timestamp) -> bool {
        self.first_period() <= period && period < self.to
    }

    /// Whether the cell at `key` (of this query's granularity) belongs in the report.
    pub fn wants(&self, key: &CellKey, cell: &UsageCell) -> bool {
        let own = key.consumer.is_none() != (self.group_by == GroupBy::Consumer);
        own && key.granularity == self.granularity
            && self.wants_period(key.period)
            && self.license.is_none_or(|l| l == key.license)
            && self.licensee.is_none_or(|l| l == cell.licensee)
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The period's start.
    pub period_start: Timestamp,
    /// The group's key: a license, licensee or consumer id, or a product's name.
    pub key: String,
    /// Its counts.
    pub counts: UsageCounts,
}

/// The rows of `query` from `cells` (those of its granularity and periods, in any order), by
/// period and then key.
pub fn report<'a>(query: &UsageQuery, cells: impl IntoIterator<Item = (CellKey, &'a UsageCell)>) -> Vec<UsageRow> {
    let mut rows: BTreeMap<(Timestamp, String), UsageCounts> = BTreeMap::new();
    for (key, cell) in cells {
        if !query.wants(&key, cell) {
            continue;
        }
        let group = match (query.group_by, key.consumer) {
            (GroupBy::License, _) => key.license.to_string(),
            (GroupBy::Licensee, _) => cell.licensee.to_string(),
            (GroupBy::Product, _) => cell.product.to_string(),
            (GroupBy::Consumer, Some(consumer)) => consumer.to_string(),
            (GroupBy::Consumer, None) => continue,
        };
        rows.entry((key.period, group)).or_default().add_beside(&cell.counts);
    }
    rows.into_iter().map(|((period_start, key), counts)| UsageRow { period_start, key, counts }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        // "YYYY-MM-DDTHH" in UTC.
        let (date, hour) = text.split_once('T').unwrap();
        let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap());
        let (y, m, d) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let days = days_from_civil(y, m as u32, d as u32);
        Timestamp::from_millis(days * DAY_MS + hour.parse::<i64>().unwrap() * HOUR_MS)
    }

    #[test]
    fn periods_start_on_the_hour_the_day_and_the_first_of_the_month_utc() {
        let t = at("2024-02-29T13").plus_millis(1_234_567);
        assert_eq!(Granularity::Hour.period_of(t), at("2024-02-29T13"));
        assert_eq!(Granularity::Day.period_of(t), at("2024-02-29T00"));
        assert_eq!(Granularity::Month.period_of(t), at("2024-02-01T00"));
        assert_eq!(Granularity::Month.next(at("2024-02-01T00")), at("2024-03-01T00"));
        assert_eq!(Granularity::Month.next(at("2024-12-01T00")), at("2025-01-01T00"));
        assert_eq!(Granularity::Month.period_of(Timestamp::from_millis(-1)), at("1969-12-01T00"));
        for days in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(days * 7 / 5);
            assert_eq!(days_from_civil(y, m, d), days * 7 / 5);
        }
    }

    #[test]
    fn parts_of_a_period_take_the_higher_peak_and_licenses_side_by_side_add_peaks() {
        let a = UsageCounts { peak_seats: 3, grants: 2, denials: 1, uses: 5, use_time_s: -20 };
        let b = UsageCounts { peak_seats: 2, grants: 1, denials: 0, uses: 1, use_time_s: 60 };
        let mut later = a;
        later.add_later(&b);
        assert_eq!(later, UsageCounts { peak_seats: 3, grants: 3, denials: 1, uses: 6, use_time_s: 40 });
        let mut beside = a;
        beside.add_beside(&b);
        assert_eq!(beside.peak_seats, 5);
    }

    #[test]
    fn a_report_groups_cells_of_its_periods_only() {
        let license = LicenseId(uuid::Uuid::from_u128(1));
        let other = LicenseId(uuid::Uuid::from_u128(2));
        let licensee = LicenseeId(uuid::Uuid::from_u128(3));
        let consumer = ConsumerId(uuid::Uuid::from_u128(4));
        let record = |license, hour, grants| UsageRecord {
            license,
            licensee,
            product: Arc::from("cad"),
            usage: OpenUsage {
                hour,
                totals: UsageCounts { peak_seats: 2, grants, ..UsageCounts::default() },
                consumers: smallvec::smallvec![(
                    consumer,
                    UsageCounts { peak_seats: 1, grants, ..UsageCounts::default() }
                )],
            },
        };
        let mut cells = BTreeMap::new();
        fold_record(&mut cells, &record(license, at("2026-03-31T22"), 1));
        fold_record(&mut cells, &record(license, at("2026-03-31T22"), 2));
        fold_record(&mut cells, &record(other, at("2026-03-31T23"), 4));
        fold_record(&mut cells, &record(license, at("2026-04-01T00"), 8));

        let query = |granularity, group_by| UsageQuery {
            from: at("2026-03-31T22").plus_millis(1),
            to: at("2026-04-01T00"),
            granularity,
            group_by,
            license: None,
            licensee: None,
        };
        let rows = report(&query(Granularity::Hour, GroupBy::License), cells.iter().map(|(k, c)| (*k, c)));
        let seen: Vec<(Timestamp, u64, u64)> =
            rows.iter().map(|r| (r.period_start, r.counts.grants, r.counts.peak_seats)).collect();
        assert_eq!(seen, vec![(at("2026-03-31T22"), 3, 2), (at("2026-03-31T23"), 4, 2)]);

        let rows = report(&query(Granularity::Month, GroupBy::Licensee), cells.iter().map(|(k, c)| (*k, c)));
        assert_eq!(rows.len(), 1, "April starts at `to`: {rows:?}");
        assert_eq!((rows[0].counts.grants, rows[0].counts.peak_seats), (7, 4), "two licenses side by side");

        let rows = report(&query(Granularity::Day, GroupBy::Consumer), cells.iter().map(|(k, c)| (*k, c)));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, consumer.to_string());
        assert_eq!((rows[0].counts.grants, rows[0].counts.peak_seats), (7, 2));
    }
}
