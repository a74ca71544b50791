//! `leasehold admin licensees ...`: the customers that hold licenses (`/admin/licensees`).

use super::call::{column, encode, given, Call, Column};
use super::PageArgs;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

/// A listing's columns.
const COLUMNS: &[Column] = &[column("ID", "/id"), column("NAME", "/name"), column("KIND", "/kind")];

/// What a licensee is.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A company or other organization.
    Organization,
    /// A natural person.
    Person,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Organization => "organization",
            Kind::Person => "person",
        }
    }
}

/// The verbs on licensees.
#[derive(Debug, Subcommand)]
pub enum Licensees {
    /// Create a licensee.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// An organization or a person.
        #[arg(long, value_enum, default_value_t = Kind::Organization)]
        kind: Kind,
    },
    /// List licensees.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one licensee.
    Get {
        /// The licensee's id.
        id: String,
    },
    /// Change a licensee's name or external id.
    Update {
        /// The licensee's id.
        id: String,
        #[command(flatten)]
        changes: Changes,
    },
    /// Delete a licensee (refused while it has licenses or consumers).
    Delete {
        /// The licensee's id.
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
    /// The licensee's id in another system (a CRM, a shop).
    #[arg(long)]
    external_id: Option<String>,
}

impl Licensees {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Licensees::Create { name, kind } => {
                Call::post("/admin/licensees".into(), json!({"name": name, "kind": kind.as_str()}))
            }
            Licensees::List { page } => Call::get("/admin/licensees".into()).listing(&page, COLUMNS),
            Licensees::Get { id } => Call::get(path(&id)),
            Licensees::Update { id, changes } => Call::patch(path(&id), changes.body()),
            Licensees::Delete { id } => Call::delete(path(&id)),
        }
    }
}

impl Changes {
    fn body(self) -> Value {
        given([("name", self.name.map(Value::from)), ("external_id", self.external_id.map(Value::from))])
    }
}

fn path(id: &str) -> String {
    format!("/admin/licensees/{}", encode(id))
}
