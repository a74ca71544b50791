//! `leasehold admin credentials ...`: tokens of the admin API with a role (`/admin/credentials`).

use super::call::{column, encode, given, Call, Column};
use super::PageArgs;
use clap::{Subcommand, ValueEnum};
use serde_json::Value;

/// A listing's columns.
const COLUMNS: &[Column] =
    &[column("ID", "/id"), column("NAME", "/name"), column("ROLE", "/role"), column("LICENSEE", "/licensee")];

const TOKEN_NOTE: &str = "The token is shown only now: give it to its holder, who sends it as the bearer token.";

/// What a credential may do (SPEC section 12).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    /// Everything.
    Admin,
    /// Every read, nothing else.
    Reader,
    /// One licensee's own administrator (needs --licensee).
    Orgadmin,
}

/// The verbs on credentials.
#[derive(Debug, Subcommand)]
pub enum Credentials {
    /// Create a credential; its token is shown once.
    Create {
        /// What it is for, or who holds it.
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: Role,
        /// The licensee an orgadmin acts for.
        #[arg(long)]
        licensee: Option<String>,
    },
    /// List credentials (never their tokens).
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete a credential: its token is refused from then on.
    Delete {
        /// The credential's id.
        id: String,
    },
}

impl Credentials {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Credentials::Create { name, role, licensee } => {
                let role = match role {
                    Role::Admin => "admin",
                    Role::Reader => "reader",
                    Role::Orgadmin => "orgadmin",
                };
                let body = given([
                    ("name", Some(name.into())),
                    ("role", Some(role.into())),
                    ("licensee", licensee.map(Value::from)),
                ]);
                Call::post("/admin/credentials".into(), body).with_note(TOKEN_NOTE)
            }
            Credentials::List { page } => Call::get("/admin/credentials".into()).listing(&page, COLUMNS),
            Credentials::Delete { id } => Call::delete(format!("/admin/credentials/{}", encode(&id))),
        }
    }
}
