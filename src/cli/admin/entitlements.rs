//! `leasehold admin entitlements ...`: a licensee's entitlements, which say which of its groups
//! may use which of its licenses (`/admin/licensees/{id}/entitlements`, `/admin/entitlements`).

use super::call::{column, encode, given, Call, Column};
use super::PageArgs;
use clap::{Args, Subcommand};
use serde_json::Value;

/// A listing's columns.
const COLUMNS: &[Column] =
    &[column("ID", "/id"), column("NAME", "/name"), column("GROUPS", "/groups"), column("LICENSES", "/licenses")];

/// The verbs on entitlements.
#[derive(Debug, Subcommand)]
pub enum Entitlements {
    /// Create an entitlement of a licensee.
    Create {
        /// The licensee's id.
        #[arg(long, value_name = "ID")]
        licensee: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// A group of the licensee whose members may use its licenses (repeat for several).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// List a licensee's entitlements.
    List {
        /// The licensee's id.
        #[arg(long, value_name = "ID")]
        licensee: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one entitlement with its groups and licenses.
    Get {
        /// The entitlement's id.
        id: String,
    },
    /// Change an entitlement's name or groups.
    Update {
        /// The entitlement's id.
        id: String,
        #[command(flatten)]
        changes: Changes,
    },
    /// Delete an entitlement.
    Delete {
        /// The entitlement's id.
        id: String,
    },
    /// Put a license of the entitlement's licensee in it (out of the one it was in).
    AddLicense {
        /// The entitlement's id.
        id: String,
        /// The license's id.
        #[arg(long)]
        license: String,
    },
    /// Take a license out of an entitlement.
    RemoveLicense {
        /// The entitlement's id.
        id: String,
        /// The license's id.
        #[arg(long)]
        license: String,
    },
}

/// The fields `update` may change; at least one.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Changes {
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A group whose members may use its licenses (repeat for several; they replace the current ones).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
}

impl Entitlements {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Entitlements::Create { licensee, name, groups } => {
                // Sent even when empty, so the body says in full which groups it starts with.
                let body = given([("name", Some(name.into())), ("groups", Some(groups.into()))]);
                Call::post(of_licensee(&licensee), body)
            }
            Entitlements::List { licensee, page } => Call::get(of_licensee(&licensee)).listing(&page, COLUMNS),
            Entitlements::Get { id } => Call::get(path(&id)),
            Entitlements::Update { id, changes } => {
                let Changes { name, groups } = changes;
                let body =
                    given([("name", name.map(Value::from)), ("groups", (!groups.is_empty()).then(|| groups.into()))]);
                Call::patch(path(&id), body)
            }
            Entitlements::Delete { id } => Call::delete(path(&id)),
            Entitlements::AddLicense { id, license } => {
                Call::post(format!("{}/licenses", path(&id)), given([("license", Some(license.into()))]))
            }
            Entitlements::RemoveLicense { id, license } => {
                Call::delete(format!("{}/licenses/{}", path(&id), encode(&license)))
            }
        }
    }
}

/// The path of licensee `licensee`'s entitlements.
fn of_licensee(licensee: &str) -> String {
    format!("/admin/licensees/{}/entitlements", encode(licensee))
}

fn path(id: &str) -> String {
    format!("/admin/entitlements/{}", encode(id))
}
