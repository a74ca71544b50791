//! `leasehold admin usage ...`: usage per period (`/admin/usage`).

use super::call::{column, Call, Column};
use clap::{Subcommand, ValueEnum};

/// A report's columns.
const COLUMNS: &[Column] = &[
    column("PERIOD", "/period_start"),
    column("KEY", "/key"),
    column("PEAK SEATS", "/peak_seats"),
    column("GRANTS", "/grants"),
    column("DENIALS", "/denials"),
    column("USES", "/uses"),
    column("USE TIME S", "/use_time_s"),
];

/// The length of a report's periods.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Granularity {
    /// Hours (UTC).
    Hour,
    /// Days (UTC).
    Day,
    /// Calendar months (UTC).
    Month,
}

/// What a report's rows are grouped by.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GroupBy {
    /// A row per license.
    License,
    /// A row per licensee.
    Licensee,
    /// A row per product.
    Product,
    /// A row per consumer.
    Consumer,
}

/// The verbs on usage.
#[derive(Debug, Subcommand)]
pub enum Usage {
    /// Usage per period: peak seats, grants, refusals, uses and use time.
    Report {
        /// The earliest time (RFC 3339); its whole period is reported.
        #[arg(long)]
        from: String,
        /// The end (RFC 3339, excluded).
        #[arg(long)]
        to: String,
        /// The periods' length.
        #[arg(long, value_enum, default_value = "day")]
        granularity: Granularity,
        /// What a row is about.
        #[arg(long, value_enum, default_value = "license")]
        group_by: GroupBy,
        /// Only this license.
        #[arg(long, value_name = "ID")]
        license: Option<String>,
        /// Only this licensee's licenses.
        #[arg(long, value_name = "ID")]
        licensee: Option<String>,
    },
}

impl Usage {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Usage::Report { from, to, granularity, group_by, license, licensee } => {
                let granularity = granularity.to_possible_value().map(|v| v.get_name().to_owned());
                let group_by = group_by.to_possible_value().map(|v| v.get_name().to_owned());
                Call::get("/admin/usage".into())
                    .with_query("from", Some(from))
                    .with_query("to", Some(to))
                    .with_query("granularity", granularity)
                    .with_query("group_by", group_by)
                    .with_query("license", license)
                    .with_query("licensee", licensee)
                    .shown_as(COLUMNS)
            }
        }
    }
}
