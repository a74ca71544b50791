//! `GET /admin/usage` (SPEC section 11): usage per period, grouped by license, licensee, product
//! or consumer, as JSON or CSV. What each column counts is in [`leasehold_engine::usage`].

use super::access::Scope;
use super::shapes::{parse_rfc3339, rfc3339};
use super::Admin;
use crate::http::reply::{self, ApiError, Body};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use leasehold_engine::usage::{Granularity, GroupBy, UsageQuery, UsageRow};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The most periods one report covers: a bound on its work and its size.
pub const MAX_PERIODS: usize = 1_000;

const COLUMNS: [&str; 7] = ["period_start", "key", "peak_seats", "grants", "denials", "uses", "use_time_s"];

/// Answers `GET /admin/usage?from=&to=&granularity=&group_by=[&license=][&licensee=][&format=]`.
pub(super) async fn report(state: &Admin<'_>, query: &str) -> Result<Response<Body>, ApiError> {
    let (mut usage_query, csv) = parse(query)?;
    if let Scope::Licensee(own) = state.scope {
        state.scope.check_licensees(usage_query.licensee.as_slice())?;
        usage_query.licensee = Some(own);
    }
    let rows = state.engine.usage_report(&usage_query).await?;
    if csv {
        let mut text = COLUMNS.join(",");
        text.push('\n');
        for row in &rows {
            let c = &row.counts;
            let _ = writeln!(
                text,
                "{},{},{},{},{},{},{}",
                rfc3339(row.period_start),
                csv_field(&row.key),
                c.peak_seats,
                c.grants,
                c.denials,
                c.uses,
                c.use_time_s
            );
        }
        return Ok(reply::bytes_response(StatusCode::OK, "text/csv; charset=utf-8", Bytes::from(text)));
    }
    let items: Vec<Value> = rows.iter().map(row).collect();
    Ok(reply::json(StatusCode::OK, &json!({"items": items})))
}

fn row(r: &UsageRow) -> Value {
    let c = &r.counts;
    json!({
        "period_start": rfc3339(r.period_start),
        "key": r.key,
        "peak_seats": c.peak_seats,
        "grants": c.grants,
        "denials": c.denials,
        "uses": c.uses,
        "use_time_s": c.use_time_s,
    })
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (product names may).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The report a query string asks for, and whether as CSV.
fn parse(query: &str) -> Result<(UsageQuery, bool), ApiError> {
    let (mut from, mut to, mut license, mut licensee) = (None, None, None, None);
    let (mut granularity, mut group_by, mut csv) = (Granularity::Day, GroupBy::License, false);
    for (name, value) in super::query_pairs(query) {
        match name {
            "from" => from = Some(parse_rfc3339("from", &value)?),
            "to" => to = Some(parse_rfc3339("to", &value)?),
            "granularity" => {
                granularity = Granularity::parse(&value)
                    .ok_or_else(|| ApiError::bad_request("granularity must be hour, day or month"))?;
            }
            "group_by" => {
                group_by = GroupBy::parse(&value)
                    .ok_or_else(|| ApiError::bad_request("group_by must be license, licensee, product or consumer"))?;
            }
            "license" => {
                license = Some(value.parse().map_err(|_| ApiError::bad_request("license must be a license id"))?);
            }
            "licensee" => {
                licensee = Some(value.parse().map_err(|_| ApiError::bad_request("licensee must be a licensee id"))?);
            }
            "format" => {
                csv = match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => return Err(ApiError::bad_request("format must be json or csv")),
                };
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; known: from, to, granularity, group_by, license, licensee, format"
                )));
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::bad_request("from and to are required (RFC 3339 times)"));
    };
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let query = UsageQuery { from, to, granularity, group_by, license, licensee };
    let mut period = query.first_period();
    for _ in 0..MAX_PERIODS {
        period = granularity.next(period);
        if period >= to {
            return Ok((query, csv));
        }
    }
    Err(ApiError::bad_request(format!(
        "a report covers at most {MAX_PERIODS} periods: narrow from and to, or use a longer granularity"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_its_periods_group_and_format() {
        let (q, csv) =
            parse("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&granularity=hour&group_by=product&format=csv")
                .expect("a valid query");
        assert_eq!((q.granularity, q.group_by, csv), (Granularity::Hour, GroupBy::Product, true));
        let (q, csv) = parse("to=2026-02-01T00:00:00Z&from=2026-01-01T00:00:00Z").expect("defaults");
        assert_eq!((q.granularity, q.group_by, csv), (Granularity::Day, GroupBy::License, false));
    }

    #[test]
    fn bad_queries_are_refused_with_what_is_wrong() {
        let refused = |q: &str| parse(q).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused("from=2026-01-01T00:00:00Z").contains("required"));
        assert!(refused("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z").contains("before"));
        assert!(refused("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=hour").contains("at most"));
        assert!(refused("from=yesterday&to=2026-03-01T00:00:00Z").contains("RFC 3339"));
        assert!(refused("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=week").contains("granularity"));
        assert!(refused("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&license=7").contains("license id"));
        assert!(refused("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&sort=key").contains("unknown"));
    }

    #[test]
    fn csv_fields_with_separators_are_quoted() {
        assert_eq!(csv_field("cad"), "cad");
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
    }
}
