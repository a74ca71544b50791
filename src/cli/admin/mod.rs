//! `leasehold admin <resource> <verb> ...`: a command-line client of the admin API (SPEC
//! sections 9 to 11), one HTTP request per verb.
//!
//! The path of a command: clap parses the arguments into a resource's verb ([`licensees`],
//! [`consumers`], [`products`], [`licenses`], [`actions`], [`events`], [`webhooks`], [`usage`],
//! [`credentials`], [`groups`], [`entitlements`], [`activation_codes`], [`license_keys`]), which builds a [`call::Call`] (the request as
//! data); [`client`] sends it with the admin token and maps what comes back or goes wrong;
//! [`output`] prints the answer, as a table for people or as JSON for scripts.
//!
//! Exit codes: 0 on success; 1 when the server refuses (its `code` and `description` are
//! printed) or cannot be reached; 2 on a usage error (clap's own, or no admin token).

mod actions;
mod activation_codes;
pub(crate) mod call;
pub(crate) mod client;
mod consumers;
mod credentials;
mod entitlements;
mod events;
mod groups;
mod license_keys;
mod licensees;
mod licenses;
mod output;
mod parse;
mod products;
mod usage;
mod webhooks;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::Write as _;
use std::process::ExitCode;

/// Where `leasehold serve` listens unless told otherwise (its `--http` default).
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Where `--help` lists the options every admin command takes.
const GLOBAL: &str = "Global options";

/// The exit code of a usage error, as clap's own.
const USAGE_EXIT_CODE: u8 = 2;

/// Options of `leasehold admin`; the global ones may come before or after the verb.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The server's URL.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "URL", env = "LEASEHOLD_SERVER", default_value = DEFAULT_SERVER,
          value_parser = parse::server)]
    server: String,
    /// The admin token or a credential's token, sent as `Authorization: Bearer <token>`.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "TOKEN", env = "LEASEHOLD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Print the server's JSON answer (pretty) instead of a table, for scripts.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    #[command(subcommand)]
    resource: Resource,
}

/// The admin API's resources.
#[derive(Debug, Subcommand)]
enum Resource {
    /// Customers that hold licenses.
    #[command(subcommand)]
    Licensees(licensees::Licensees),
    /// Users and devices that consume licenses, with their API keys.
    #[command(subcommand)]
    Consumers(consumers::Consumers),
    /// What is sold: products, their features and tiers.
    #[command(subcommand)]
    Products(products::Products),
    /// Licenses: their terms, lifecycle, leases, seats and machines.
    #[command(subcommand)]
    Licenses(licenses::Licenses),
    /// Live leases.
    #[command(subcommand)]
    Leases(actions::Leases),
    /// Signed tokens: audit and regeneration.
    #[command(subcommand)]
    Tokens(actions::Tokens),
    /// Signing keys.
    #[command(subcommand)]
    Keys(actions::Keys),
    /// What changed, who changed it and when.
    #[command(subcommand)]
    Events(events::Events),
    /// Events posted to other systems: subscriptions, deliveries, retries.
    #[command(subcommand)]
    Webhooks(webhooks::Webhooks),
    /// Usage per period, for billing.
    #[command(subcommand)]
    Usage(usage::Usage),
    /// Tokens of the admin API with a role: admin, reader, or one licensee's orgadmin.
    #[command(subcommand)]
    Credentials(credentials::Credentials),
    /// A licensee's groups of users or device clients and their members.
    #[command(subcommand)]
    Groups(groups::Groups),
    /// A licensee's entitlements: which groups may use which licenses.
    #[command(subcommand)]
    Entitlements(entitlements::Entitlements),
    /// Activation codes (product keys): batches made from a license template.
    #[command(subcommand)]
    ActivationCodes(activation_codes::ActivationCodes),
    /// The platform's license keys: issued to customers, activated per machine by applications.
    #[command(subcommand)]
    LicenseKeys(license_keys::LicenseKeys),
}

impl Resource {
    fn call(self) -> call::Call {
        match self {
            Resource::Licensees(verb) => verb.call(),
            Resource::Consumers(verb) => verb.call(),
            Resource::Products(verb) => verb.call(),
            Resource::Licenses(verb) => verb.call(),
            Resource::Leases(verb) => verb.call(),
            Resource::Tokens(verb) => verb.call(),
            Resource::Keys(verb) => verb.call(),
            Resource::Events(verb) => verb.call(),
            Resource::Webhooks(verb) => verb.call(),
            Resource::Usage(verb) => verb.call(),
            Resource::Credentials(verb) => verb.call(),
            Resource::Groups(verb) => verb.call(),
            Resource::Entitlements(verb) => verb.call(),
            Resource::ActivationCodes(verb) => verb.call(),
            Resource::LicenseKeys(verb) => verb.call(),
        }
    }
}

/// The page options of every listing.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Most items in one page (1 to 1000; the server's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: Option<u16>,
    /// Start after this cursor (a `next_cursor` of an earlier page).
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,
    /// Every page: follow `next_cursor` until the last.
    #[arg(long)]
    all: bool,
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No admin token was given.
    #[error("no admin token: give --admin-token or set LEASEHOLD_ADMIN_TOKEN")]
    NoToken,
    /// The admin token cannot be sent in a header.
    #[error("the admin token has characters an HTTP header cannot carry")]
    BadToken,
    /// The server refused the request.
    #[error("{code}: {description} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error code, as `notFound`.
        code: String,
        /// The server's explanation.
        description: String,
    },
    /// No connection to the server.
    #[error("cannot reach the server at {server} ({reason}); is `leasehold serve` running there? (--server, LEASEHOLD_SERVER)")]
    Unreachable {
        /// The server's URL.
        server: String,
        /// Why.
        reason: String,
    },
    /// The connection broke before the answer came.
    #[error("the request to {server} failed: {reason}")]
    Failed {
        /// The server's URL.
        server: String,
        /// Why.
        reason: String,
    },
    /// No complete answer in time.
    #[error("no answer from {server} within {timeout_s} s")]
    Timeout {
        /// The server's URL.
        server: String,
        /// How long the client waited.
        timeout_s: u64,
    },
    /// The answer is not JSON (not the admin API, or a proxy's error page).
    #[error("the server answered HTTP {status} with something other than JSON: {body:.200}")]
    NotJson {
        /// The HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The server URL and a path do not make a URL.
    #[error("not a URL: {0}")]
    BadUrl(String),
    /// A listing answered the cursor it was asked to start from: following it would never end.
    #[error("the server answered next_cursor {0:?} twice; stopping")]
    CursorRepeated(String),
    /// The client's runtime did not start.
    #[error("starting the client: {0}")]
    Runtime(std::io::Error),
    /// The answer could not be printed.
    #[error("printing the answer: {0}")]
    Output(std::io::Error),
}

impl AdminError {
    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AdminError::NoToken | AdminError::BadToken => ExitCode::from(USAGE_EXIT_CODE),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs one admin command: prints its answer, or the reason it failed on stderr.
pub fn run(args: AdminArgs) -> ExitCode {
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold admin: {e}");
            e.exit_code()
        }
    }
}

fn execute(args: AdminArgs) -> Result<(), AdminError> {
    let admin_token = args.admin_token.filter(|t| !t.trim().is_empty()).ok_or(AdminError::NoToken)?;
    let call = args.resource.call();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(AdminError::Runtime)?;
    let client = client::Client::new(args.server, admin_token.trim().to_owned());
    let answer = runtime.block_on(fetch(&client, &call))?;
    let mut text = output::render(&answer, call.view, args.json);
    if let (Some(note), false) = (call.note, args.json) {
        text.push_str(note);
        text.push('\n');
    }
    std::io::stdout().lock().write_all(text.as_bytes()).map_err(AdminError::Output)
}

/// The answer to `call`; with `--all`, every page's items in one listing.
async fn fetch(client: &client::Client, call: &call::Call) -> Result<Value, AdminError> {
    let mut page = client.send(call, None).await?;
    if !call.follow_pages {
        return Ok(page);
    }
    let mut items = Vec::new();
    loop {
        items.extend(page["items"].as_array_mut().map(std::mem::take).unwrap_or_default());
        let Some(cursor) = page["next_cursor"].as_str().map(str::to_owned) else { break };
        page = client.send(call, Some(&cursor)).await?;
        if page["next_cursor"].as_str() == Some(cursor.as_str()) {
            return Err(AdminError::CursorRepeated(cursor));
        }
    }
    Ok(json!({"items": items, "next_cursor": null}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verbs_options_are_consistent() {
        // clap checks ids, groups and conflicts when a command is built, in debug builds only.
        AdminArgs::augment_args(clap::Command::new("admin")).debug_assert();
    }

    #[test]
    fn the_default_server_is_where_serve_listens_by_default() {
        assert_eq!(DEFAULT_SERVER, format!("http://{}", crate::cli::config::DEFAULT_HTTP));
    }
}
