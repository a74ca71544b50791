//! `leasehold admin webhooks ...`: subscriptions to events, their deliveries and retries
//! (`/admin/webhooks`).

use super::call::{column, encode, given, Call, Column};
use super::PageArgs;
use clap::{ArgAction, Args, Subcommand};
use hyper::Method;
use serde_json::Value;

/// A listing's columns.
const COLUMNS: &[Column] =
    &[column("ID", "/id"), column("URL", "/url"), column("EVENTS", "/events"), column("ENABLED", "/enabled")];

/// A delivery listing's columns.
const DELIVERY_COLUMNS: &[Column] = &[
    column("EVENT", "/event_id"),
    column("STATUS", "/status"),
    column("ATTEMPTS", "/attempts"),
    column("LAST CODE", "/last_status_code"),
    column("NEXT ATTEMPT", "/next_attempt_at"),
];

const SECRET_NOTE: &str = "The secret is shown only now: keep it to verify the signatures.";

/// The verbs on webhooks.
#[derive(Debug, Subcommand)]
pub enum Webhooks {
    /// Subscribe a URL to events.
    Create {
        /// Where the events are posted (`http://...`).
        #[arg(long)]
        url: String,
        /// An event type, `prefix.*` for a family or `*` for all (repeat for several).
        #[arg(long = "event", value_name = "TYPE", required = true)]
        events: Vec<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List webhooks.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one webhook.
    Get {
        /// The webhook's id.
        id: String,
    },
    /// Change a webhook.
    Update {
        /// The webhook's id.
        id: String,
        #[command(flatten)]
        changes: Changes,
    },
    /// Delete a webhook (its pending deliveries are dropped).
    Delete {
        /// The webhook's id.
        id: String,
    },
    /// List a webhook's deliveries, newest first.
    Deliveries {
        /// The webhook's id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Send an event to a webhook again.
    Retry {
        /// The webhook's id.
        id: String,
        /// The event's id.
        event_id: String,
    },
}

/// The fields `update` may change; at least one.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Changes {
    /// A new URL.
    #[arg(long)]
    url: Option<String>,
    /// The event types, replacing the current ones (repeat for several).
    #[arg(long = "event", value_name = "TYPE")]
    events: Vec<String>,
    /// A new description.
    #[arg(long)]
    description: Option<String>,
    /// `false` stops its deliveries; `true` starts them again.
    #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
    enabled: Option<bool>,
}

fn path(id: &str) -> String {
    format!("/admin/webhooks/{}", encode(id))
}

impl Webhooks {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Webhooks::Create { url, events, description } => {
                let body = given([
                    ("url", Some(url.into())),
                    ("events", Some(events.into())),
                    ("description", description.map(Value::from)),
                ]);
                Call::post("/admin/webhooks".into(), body).with_note(SECRET_NOTE)
            }
            Webhooks::List { page } => Call::get("/admin/webhooks".into()).listing(&page, COLUMNS),
            Webhooks::Get { id } => Call::get(path(&id)),
            Webhooks::Update { id, changes } => {
                let Changes { url, events, description, enabled } = changes;
                let body = given([
                    ("url", url.map(Value::from)),
                    ("events", (!events.is_empty()).then(|| events.into())),
                    ("description", description.map(Value::from)),
                    ("enabled", enabled.map(Value::from)),
                ]);
                Call::patch(path(&id), body)
            }
            Webhooks::Delete { id } => Call::delete(path(&id)),
            Webhooks::Deliveries { id, page } => {
                Call::get(format!("{}/deliveries", path(&id))).listing(&page, DELIVERY_COLUMNS)
            }
            Webhooks::Retry { id, event_id } => {
                Call::new(Method::POST, format!("{}/deliveries/{}/retry", path(&id), encode(&event_id)))
            }
        }
    }
}
