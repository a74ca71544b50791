//! `leasehold admin groups ...`: a licensee's groups of users or of device clients, and their
//! members (`/admin/licensees/{id}/groups`, `/admin/groups`).

use super::call::{column, encode, given, Call, Column};
use super::consumers::Kind;
use super::PageArgs;
use clap::Subcommand;
use serde_json::Value;

/// A listing's columns.
const COLUMNS: &[Column] =
    &[column("ID", "/id"), column("NAME", "/name"), column("KIND", "/kind"), column("MEMBERS", "/members")];

const INVITATION_NOTE: &str = "The token is shown only now: send it to the invitee.";

/// The verbs on groups.
#[derive(Debug, Subcommand)]
pub enum Groups {
    /// Create a group of a licensee's consumers.
    Create {
        /// The licensee's id.
        #[arg(long, value_name = "ID")]
        licensee: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Which kind of consumer it holds: users or device clients.
        #[arg(long, value_enum)]
        kind: Kind,
    },
    /// List a licensee's groups.
    List {
        /// The licensee's id.
        #[arg(long, value_name = "ID")]
        licensee: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one group with its members.
    Get {
        /// The group's id.
        id: String,
    },
    /// Delete a group.
    Delete {
        /// The group's id.
        id: String,
    },
    /// Add a consumer of the group's licensee, of the group's kind, to its members.
    AddMember {
        /// The group's id.
        id: String,
        /// The consumer's id.
        #[arg(long)]
        consumer: String,
    },
    /// Take a consumer out of a group.
    RemoveMember {
        /// The group's id.
        id: String,
        /// The consumer's id.
        #[arg(long)]
        consumer: String,
    },
    /// Invite someone to a group; the token is shown once (answered at
    /// `POST /invitations/{token}/accept` or `/decline`).
    Invite {
        /// The group's id.
        id: String,
        /// Whom the invitation is for.
        #[arg(long)]
        email: String,
        /// Seconds it may be answered in (7 days when not given).
        #[arg(long, value_name = "SECONDS")]
        expires_in_s: Option<u64>,
    },
}

impl Groups {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Groups::Create { licensee, name, kind } => {
                let body = given([("name", Some(name.into())), ("kind", Some(kind.as_str().into()))]);
                Call::post(of_licensee(&licensee), body)
            }
            Groups::List { licensee, page } => Call::get(of_licensee(&licensee)).listing(&page, COLUMNS),
            Groups::Get { id } => Call::get(path(&id)),
            Groups::Delete { id } => Call::delete(path(&id)),
            Groups::AddMember { id, consumer } => {
                Call::post(format!("{}/members", path(&id)), given([("consumer", Some(consumer.into()))]))
            }
            Groups::RemoveMember { id, consumer } => {
                Call::delete(format!("{}/members/{}", path(&id), encode(&consumer)))
            }
            Groups::Invite { id, email, expires_in_s } => {
                let body = given([("email", Some(email.into())), ("expires_in_s", expires_in_s.map(Value::from))]);
                Call::post(format!("{}/invitations", path(&id)), body).with_note(INVITATION_NOTE)
            }
        }
    }
}

/// The path of licensee `licensee`'s groups.
fn of_licensee(licensee: &str) -> String {
    format!("/admin/licensees/{}/groups", encode(licensee))
}

fn path(id: &str) -> String {
    format!("/admin/groups/{}", encode(id))
}
