//! `leasehold admin events ...`: what changed, who changed it and when (`/admin/events`).

use super::call::{column, Call, Column};
use super::PageArgs;
use clap::Subcommand;

/// A listing's columns.
const COLUMNS: &[Column] = &[
    column("ID", "/id"),
    column("AT", "/at"),
    column("TYPE", "/type"),
    column("ACTOR", "/actor/kind"),
    column("SUBJECT", "/subject/id"),
];

/// The verbs on events.
#[derive(Debug, Subcommand)]
pub enum Events {
    /// List events, oldest first.
    List {
        /// Only this type, or `prefix.*` for a family (as `license.*`).
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Only events about the object with this id (a product's name).
        #[arg(long, value_name = "ID")]
        subject: Option<String>,
        /// Only events after this event id.
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

impl Events {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Events::List { event_type, subject, after, page } => Call::get("/admin/events".into())
                .with_query("type", event_type)
                .with_query("subject", subject)
                .with_query("after", after)
                .listing(&page, COLUMNS),
        }
    }
}
