//! `leasehold admin consumers ...`: the users and devices that consume licenses, and their API
//! keys (`/admin/consumers`).

use super::call::{column, encode, given, Call, Column};
use super::PageArgs;
use clap::{ArgAction, Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::Value;

/// A listing's columns.
const COLUMNS: &[Column] = &[
    column("ID", "/id"),
    column("NAME", "/name"),
    column("KIND", "/kind"),
    column("EMAIL", "/email"),
    column("LICENSEES", "/licensees"),
];

/// Said after an answer that carries an API key.
const KEY_NOTE: &str = "The api_key is shown only now: keep it.";

/// What a consumer is (and which kind a group holds).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A person using the software.
    User,
    /// A machine or service using it without a person.
    Device,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Device => "device",
        }
    }
}

/// The verbs on consumers.
#[derive(Debug, Subcommand)]
pub enum Consumers {
    /// Create a consumer and print its API key (shown only this once).
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// A licensee it belongs to (repeat for several).
        #[arg(long = "licensee", value_name = "ID", required = true)]
        licensees: Vec<String>,
        /// A user or a device.
        #[arg(long, value_enum, default_value_t = Kind::User)]
        kind: Kind,
        /// Its email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// List consumers.
    List {
        /// Only the consumers of this licensee.
        #[arg(long, value_name = "ID")]
        licensee: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one consumer.
    Get {
        /// The consumer's id.
        id: String,
    },
    /// Change a consumer.
    Update {
        /// The consumer's id.
        id: String,
        #[command(flatten)]
        changes: Changes,
    },
    /// Give a consumer a new API key; the old one is refused from that moment.
    RotateKey {
        /// The consumer's id.
        id: String,
    },
    /// Delete a consumer (its leases are released).
    Delete {
        /// The consumer's id.
        id: String,
    },
}

/// The fields `update` may change; at least one.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Changes {
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A new email address.
    #[arg(long)]
    email: Option<String>,
    /// The consumer's id in another system.
    #[arg(long)]
    external_id: Option<String>,
    /// The licensees it belongs to, replacing the current ones (repeat for several).
    #[arg(long = "licensee", value_name = "ID")]
    licensees: Vec<String>,
    /// `true` refuses its key and the renewal of its leases; `false` lets it back in.
    #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
    disabled: Option<bool>,
}

impl Consumers {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Consumers::Create { name, licensees, kind, email } => {
                let body = given([
                    ("name", Some(name.into())),
                    ("kind", Some(kind.as_str().into())),
                    ("licensees", Some(licensees.into())),
                    ("email", email.map(Value::from)),
                ]);
                Call::post("/admin/consumers".into(), body).with_note(KEY_NOTE)
            }
            Consumers::List { licensee, page } => {
                Call::get("/admin/consumers".into()).with_query("licensee", licensee).listing(&page, COLUMNS)
            }
            Consumers::Get { id } => Call::get(path(&id)),
            Consumers::Update { id, changes } => Call::patch(path(&id), changes.body()),
            Consumers::RotateKey { id } => {
                Call::new(Method::POST, format!("{}/api-key", path(&id))).with_note(KEY_NOTE)
            }
            Consumers::Delete { id } => Call::delete(path(&id)),
        }
    }
}

impl Changes {
    fn body(self) -> Value {
        let licensees = (!self.licensees.is_empty()).then(|| Value::from(self.licensees));
        given([
            ("name", self.name.map(Value::from)),
            ("email", self.email.map(Value::from)),
            ("external_id", self.external_id.map(Value::from)),
            ("licensees", licensees),
            ("disabled", self.disabled.map(Value::from)),
        ])
    }
}

fn path(id: &str) -> String {
    format!("/admin/consumers/{}", encode(id))
}
