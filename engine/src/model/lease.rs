//! Leases: the time-limited right of one consumer, in one session, to use one license.

use crate::ids::{ConsumerId, LeaseId, LicenseId};
use crate::model::license::SessionAnchor;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

/// How a client uses a lease: online (short, refreshed often) or offline (long).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LeaseMode {
    /// `consumptionMode=cache`: the client is online and renews often.
    #[default]
    Online,
    /// `consumptionMode=checkout`: the client may stay offline for long.
    Offline,
}

impl LeaseMode {
    /// The name on the wire (`cache` or `checkout`).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseMode::Online => "cache",
            LeaseMode::Offline => "checkout",
        }
    }
}

/// The claims a client makes about itself at checkout; a renewal must make the same ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Anchors {
    /// Hardware id (`hw`, `cliHwId`).
    pub hw: Option<String>,
    /// Hardware's friendly name (`hw=..;name=`, `cliHwLabel`).
    pub hw_name: Option<String>,
    /// Process id (`process`, `cliProcessId`).
    pub process: Option<String>,
    /// Application name (`process=..;name=`).
    pub process_name: Option<String>,
    /// Client version (`version`, `cliVersion`).
    pub version: Option<String>,
    /// Other client claims (`cliInstallationId`, ...), kept to be echoed in tokens.
    pub extra: BTreeMap<String, String>,
}

impl Anchors {
    /// These claims in a shared allocation. A lease keeps its checkout's claims for renewals and
    /// tokens; clients that make none (the common case for user-anchored sessions) all share one
    /// empty copy instead of each lease holding its own.
    pub fn shared(&self) -> Arc<Anchors> {
        static NONE: LazyLock<Arc<Anchors>> = LazyLock::new(|| Arc::new(Anchors::default()));
        if *self == Anchors::default() {
            Arc::clone(&NONE)
        } else {
            Arc::new(self.clone())
        }
    }

    /// Whether a renewal's claims agree with the checkout's: every claim the renewal makes must
    /// equal the checkout's; claims it leaves out are taken from the lease.
    pub fn agree_with(&self, renewal: &Anchors) -> bool {
        fn same(lease: &Option<String>, renewal: &Option<String>) -> bool {
            renewal.is_none() || renewal == lease
        }
        same(&self.hw, &renewal.hw)
            && same(&self.process, &renewal.process)
            && same(&self.version, &renewal.version)
            && renewal.extra.iter().all(|(k, v)| self.extra.get(k) == Some(v))
    }
}

/// What identifies a session: one seat is taken per distinct session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionKey {
    /// The values of the license model's anchors (those not anchored are `None`).
    Anchored {
        /// The consumer, when `user` is an anchor.
        user: Option<ConsumerId>,
        /// The hardware id, when `hw` is an anchor.
        hw: Option<Arc<str>>,
        /// The process id, when `process` is an anchor.
        process: Option<Arc<str>>,
    },
    /// No anchors: every lease is a session of its own.
    Unanchored(LeaseId),
}

impl SessionKey {
    /// The session of a request by `consumer` with `anchors` under `anchor_set`; `Err` names the
    /// first anchor the request lacks.
    pub fn of(
        anchor_set: &[SessionAnchor],
        consumer: ConsumerId,
        anchors: &Anchors,
        new_lease: LeaseId,
    ) -> Result<SessionKey, SessionAnchor> {
        if anchor_set.is_empty() {
            return Ok(SessionKey::Unanchored(new_lease));
        }
        let wants = |a| anchor_set.contains(&a);
        let pick = |a, value: &Option<String>| -> Result<Option<Arc<str>>, SessionAnchor> {
            if !wants(a) {
                return Ok(None);
            }
            match value.as_deref() {
                Some(v) if !v.is_empty() => Ok(Some(Arc::from(v))),
                _ => Err(a),
            }
        };
        Ok(SessionKey::Anchored {
            user: wants(SessionAnchor::User).then_some(consumer),
            hw: pick(SessionAnchor::Hw, &anchors.hw)?,
            process: pick(SessionAnchor::Process, &anchors.process)?,
        })
    }
}

fn deserialize_shared_anchors<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Arc<Anchors>, D::Error> {
    Anchors::deserialize(deserializer).map(|anchors| anchors.shared())
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Its id (`jti`, `leaseId`); a new one on every renewal.
    pub id: LeaseId,
    /// The license it uses.
    pub license: LicenseId,
    /// Who holds it.
    pub consumer: ConsumerId,
    /// The item asked for (the product or one of its features), shared
    /// ([`crate::model::License::shared_item`]).
    #[serde(deserialize_with = "crate::interning::deserialize_name")]
    pub item: Arc<str>,
    /// The session it belongs to.
    pub session: SessionKey,
    /// The client's claims at checkout ([`Anchors::shared`]).
    #[serde(deserialize_with = "deserialize_shared_anchors")]
    pub anchors: Arc<Anchors>,
    /// Online or offline.
    pub mode: LeaseMode,
    /// When the session's first lease was granted.
    pub granted_at: Timestamp,
    /// When this lease (this id) was issued: the grant or the latest renewal.
    pub issued_at: Timestamp,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// When the client should renew.
    pub refresh_at: Timestamp,
    /// Earliest time a heartbeat is accepted (`hbnbf`).
    pub heartbeat_not_before: Timestamp,
    /// Quantity set aside for it: 1 seat, n uses, or s seconds.
    pub qty_prealloc: u64,
    /// Quantity the client reported as used so far.
    pub qty_verified: u64,
    /// Whether it records use without limits (metered use).
    pub metered: bool,
}
