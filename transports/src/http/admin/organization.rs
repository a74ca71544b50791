//! A licensee's organization under `/admin/` (SPEC section 12): its groups of users and of
//! device clients with their members, and its entitlements with their groups and licenses.

use super::shapes::{self, AssignmentIn};
use super::{path_id, Admin, Call, Listing};
use crate::http::reply::{self, ApiError, Body};
use crate::mail::Mail;
use hyper::{Method, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::directory::Directory;
use leasehold_engine::model::Entitlement;
use leasehold_engine::Timestamp;
use leasehold_engine::{
    ConsumerId, EntitlementId, EntitlementPatch, GroupId, LicenseId, LicenseeId, NewEntitlement, NewGroup,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /admin/groups/{id}/invitations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvitationIn {
    email: String,
    #[serde(default)]
    expires_in_s: Option<u64>,
}

/// `POST /admin/entitlements/{id}/licenses`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseRef {
    license: LicenseId,
}

/// Answers a request under `/admin/licensees/{id}/groups`, `/admin/licensees/{id}/entitlements`,
/// `/admin/groups` or `/admin/entitlements` (a path [`allowed`] knows).
pub(super) async fn route(
    state: &Admin<'_>,
    call: &Call,
    segments: &[&str],
    method: &Method,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    match (segments, method) {
        (["licensees", id, "groups"], &Method::POST) => create_group(state, call, id, once).await,
        (["licensees", id, "groups"], &Method::GET) => listing(state, call, id, |directory, licensee| {
            directory
                .groups()
                .filter(|g| g.licensee == licensee)
                .map(|g| (g.id.to_string(), shapes::group(g)))
                .collect()
        }),
        (["licensees", id, "entitlements"], &Method::POST) => create_entitlement(state, call, id, once).await,
        (["licensees", id, "entitlements"], &Method::GET) => listing(state, call, id, |directory, licensee| {
            let of_licensee = directory.entitlements().filter(|e| e.licensee == licensee);
            of_licensee.map(|e| (e.id.to_string(), entitlement(directory, e))).collect()
        }),
        (["groups", id], &Method::GET) => {
            let id: GroupId = path_id("group", id)?;
            let found = state.engine.directory().group(id).map(shapes::group);
            found.map(|v| reply::json(StatusCode::OK, &v)).ok_or_else(|| ApiError::not_found(format!("group {id}")))
        }
        (["groups", id], &Method::DELETE) => {
            state.engine.delete_group(path_id("group", id)?).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["groups", id, "members"], &Method::POST) => {
            let id: GroupId = path_id("group", id)?;
            let body: AssignmentIn = call.required()?;
            let group = state.engine.add_member(id, body.consumer).await?;
            Ok(reply::json(StatusCode::OK, &shapes::group(&group)))
        }
        (["groups", id, "invitations"], &Method::POST) => {
            let id: GroupId = path_id("group", id)?;
            let body: InvitationIn = call.required()?;
            let (invitation, token) = state.engine.create_invitation(id, body.email, body.expires_in_s, once).await?;
            let emailed = match &state.http.mailer {
                Some(mailer) => {
                    let group = state.engine.directory().group(id).map(|g| g.name.clone()).unwrap_or_default();
                    let mail =
                        invitation_mail(&invitation.email, &group, &call.base_url, &token, invitation.expires_at);
                    let sent = mailer.send(mail).await;
                    if let Err(e) = &sent {
                        tracing::warn!(invitation = %invitation.id, error = %e, "the invitation was not e-mailed");
                    }
                    sent.is_ok()
                }
                None => false,
            };
            let answer = json!({
                "id": invitation.id,
                "group": invitation.group,
                "email": invitation.email,
                "token": token,
                "expires_at": shapes::rfc3339(invitation.expires_at),
                "emailed": emailed,
            });
            Ok(reply::json(StatusCode::CREATED, &answer))
        }
        (["groups", id, "members", consumer], &Method::DELETE) => {
            let consumer: ConsumerId = path_id("consumer", consumer)?;
            state.engine.remove_member(path_id("group", id)?, consumer).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["entitlements", id], &Method::GET) => path_id::<EntitlementId>("entitlement", id).and_then(|id| {
            let directory = state.engine.directory();
            let found = directory.entitlement(id).map(|e| entitlement(&directory, e));
            found
                .map(|v| reply::json(StatusCode::OK, &v))
                .ok_or_else(|| ApiError::not_found(format!("entitlement {id}")))
        }),
        (["entitlements", id], &Method::PATCH) => {
            let id: EntitlementId = path_id("entitlement", id)?;
            let patch: EntitlementPatch = call.required()?;
            let changed = state.engine.patch_entitlement(id, patch).await?;
            Ok(reply::json(StatusCode::OK, &entitlement(&state.engine.directory(), &changed)))
        }
        (["entitlements", id], &Method::DELETE) => {
            state.engine.delete_entitlement(path_id("entitlement", id)?).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["entitlements", id, "licenses"], &Method::POST) => {
            let id: EntitlementId = path_id("entitlement", id)?;
            let body: LicenseRef = call.required()?;
            state.engine.set_entitlement(body.license, Some(id)).await?;
            Ok(reply::json(StatusCode::OK, &json!({"entitlement": id, "license": body.license})))
        }
        (["entitlements", id, "licenses", license], &Method::DELETE) => {
            let id: EntitlementId = path_id("entitlement", id)?;
            let license: LicenseId = path_id("license", license)?;
            let in_it = state.engine.license(license).is_some_and(|l| l.entitlement == Some(id));
            if !in_it {
                return Err(ApiError::not_found(format!("license {license} in entitlement {id}")));
            }
            state.engine.set_entitlement(license, None).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(ApiError::method_not_allowed(allowed(segments))),
    }
}

/// The message inviting `email` to group `group`: the token, and how to answer with it.
fn invitation_mail(email: &str, group: &str, base_url: &str, token: &str, expires_at: Timestamp) -> Mail {
    let accept = format!("{base_url}/invitations/{token}/accept");
    let body = format!(
        "You are invited to join the group {group:?}.\n\n\
         Your invitation token: {token}\n\n\
         Accept it as a new user:\n  \
         curl -X POST {accept} -H 'Content-Type: application/json' -d '{{\"name\": \"Your Name\"}}'\n\n\
         or with your existing API key:\n  \
         curl -X POST {accept} -H 'Authorization: Bearer <your API key>'\n\n\
         Decline it with POST {base_url}/invitations/{token}/decline. It expires at {}.\n",
        shapes::rfc3339(expires_at)
    );
    Mail { to: email.to_owned(), subject: format!("Your invitation to {group}"), body }
}

/// The methods a path of this module allows (empty when it is none of them).
pub(super) fn allowed(segments: &[&str]) -> &'static str {
    match segments {
        ["licensees", _, "groups" | "entitlements"] => "GET or POST",
        ["groups", _] => "GET or DELETE",
        ["entitlements", _] => "GET, PATCH or DELETE",
        ["groups", _, "members" | "invitations"] | ["entitlements", _, "licenses"] => "POST",
        ["groups", _, "members", _] | ["entitlements", _, "licenses", _] => "DELETE",
        _ => "",
    }
}

fn entitlement(directory: &Directory, e: &Entitlement) -> Value {
    let licenses: Vec<LicenseId> =
        directory.licenses_of(e.licensee).filter(|l| l.entitlement == Some(e.id)).map(|l| l.id).collect();
    shapes::entitlement(e, &licenses)
}

/// A listing of licensee `id`'s objects that `items` picks from the directory, keyed by id.
fn listing(
    state: &Admin<'_>,
    call: &Call,
    id: &str,
    items: impl FnOnce(&Directory, LicenseeId) -> Vec<(String, Value)>,
) -> Result<Response<Body>, ApiError> {
    let listing = Listing::parse(&call.query, &[])?;
    let licensee: LicenseeId = path_id("licensee", id)?;
    let directory = state.engine.directory();
    directory.licensee(licensee).ok_or_else(|| ApiError::not_found(format!("licensee {licensee}")))?;
    let found = items(&directory, licensee);
    Ok(listing.page(found.into_iter(), |(key, _)| key.clone(), |(_, value)| value))
}

async fn create_group(
    state: &Admin<'_>,
    call: &Call,
    licensee: &str,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let licensee: LicenseeId = path_id("licensee", licensee)?;
    let new: NewGroup = call.required()?;
    let group = state.engine.create_group(licensee, new, once).await?;
    Ok(reply::json(StatusCode::CREATED, &shapes::group(&group)))
}

async fn create_entitlement(
    state: &Admin<'_>,
    call: &Call,
    licensee: &str,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let licensee: LicenseeId = path_id("licensee", licensee)?;
    let new: NewEntitlement = call.required()?;
    let created = state.engine.create_entitlement(licensee, new, once).await?;
    Ok(reply::json(StatusCode::CREATED, &entitlement(&state.engine.directory(), &created)))
}
