//! A node's part in a cluster: it announces itself on core NATS, hears the others, asks its
//! streams' tasks to take over the streams preferred for it and to hand over the others, and
//! follows the directory's stream while another node writes it.

use super::{name_of, Control, Shared, StreamJournalError, NOT_OWNED, OWNED};
use crate::fence::Record;
use crate::format::decode_batch_entries;
use crate::jetstream::{PartitionStream, StreamName};
use crate::membership::{preferred_owner, Heartbeat, DEAD_AFTER, HEARTBEAT_EVERY};
use futures_util::StreamExt;
use leasehold_engine::decide::LicenseState;
use leasehold_engine::journal::JournalEntry;
use leasehold_engine::time::Timestamp;
use leasehold_engine::Engine;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Changes waiting for the engine to apply them.
pub(super) const CHANGES_QUEUE: usize = 1_024;

/// How often a node that does not write the directory reads what was added to it.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Where the other nodes and clients reach a node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its HTTP address (`host:port`), where the other nodes forward requests.
    pub http: String,
    /// Its binary protocol's address (`host:port`).
    pub tcp: String,
}

/// What the engine of a node of a cluster applies as the cluster changes, in order.
#[derive(Debug)]
pub enum ClusterChange {
    /// Entries another node journaled to the directory's stream: apply them
    /// (`Engine::replicate`), then say so on `applied` (the node claims the directory only once
    /// its engine holds all of it).
    Directory {
        /// The entries, in order.
        entries: Vec<JournalEntry>,
        /// Answered once they are applied.
        applied: oneshot::Sender<()>,
    },
    /// This node owns `partition` now: its licenses' states as the stream holds them
    /// (`Engine::adopt` starts those the engine did not know).
    Adopted {
        /// The partition.
        partition: u32,
        /// Its licenses, with the time of each one's last change.
        licenses: Vec<(LicenseState, Timestamp)>,
    },
}

impl ClusterChange {
    /// Applies the change to `engine`, and says so for a directory change.
    pub fn apply(self, engine: &Engine) {
        match self {
            ClusterChange::Directory { entries, applied } => {
                engine.replicate(&entries);
                let _ = applied.send(());
            }
            ClusterChange::Adopted { licenses, .. } => engine.adopt(licenses),
        }
    }
}

/// The stream key rendezvous hashing ranks nodes by: the partition's number, and the partition
/// count for the directory's.
fn stream_key(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Announces this node every [`HEARTBEAT_EVERY`], hears the others, and keeps each stream with
/// its preferred owner among the live nodes: asks to take over those preferred for this node
/// and to hand over the others. Listens for [`DEAD_AFTER`] after start before it says it is
/// ready and takes any stream, so that it has heard every live node first; until it is ready
/// the others keep their streams.
pub(super) async fn take_part(
    shared: Arc<Shared>,
    client: async_nats::Client,
    node: super::ClusterNode,
    controls: Vec<mpsc::Sender<Control>>,
) {
    let me = shared.config.node.clone();
    let mut heard = match client.subscribe("lh.hb.*").await {
        Ok(subscription) => subscription,
        Err(e) => {
            tracing::error!(error = %e, "cannot hear the cluster's heartbeats: this node takes no stream");
            return;
        }
    };
    let mut leaving = shared.leaving.subscribe();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let warm_up_ms = u64::try_from(DEAD_AFTER.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::select! {
            message = heard.next() => {
                let Some(message) = message else { return };
                if let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&message.payload) {
                    let now = shared.now_ms();
                    shared.peers.lock().unwrap_or_else(|p| p.into_inner()).heard(heartbeat, now);
                }
            }
            _ = leaving.changed() => tick.reset_immediately(),
            _ = tick.tick() => {
                let leaving_now = *shared.leaving.borrow();
                let now = shared.now_ms();
                let beat = Heartbeat {
                    node: me.clone(),
                    http: node.http.clone(),
                    tcp: node.tcp.clone(),
                    ready: now >= warm_up_ms,
                    leaving: leaving_now,
                };
                match serde_json::to_vec(&beat) {
                    Ok(payload) => {
                        if let Err(e) = client.publish(format!("lh.hb.{me}"), payload.into()).await {
                            tracing::warn!(error = %e, "could not send a heartbeat");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not encode a heartbeat"),
                }
                if now < warm_up_ms && !leaving_now {
                    continue;
                }
                let preferred: Vec<Option<String>> = {
                    let peers = shared.peers.lock().unwrap_or_else(|p| p.into_inner());
                    let live = peers.live(now);
                    (0..controls.len()).map(|index| preferred_owner(stream_key(index), &live).map(str::to_owned)).collect()
                };
                for ((index, control), preferred) in controls.iter().enumerate().zip(preferred) {
                    let mine = !leaving_now && preferred.as_deref() == Some(me.as_str());
                    match shared.status(index) {
                        OWNED if !mine => {
                            let _ = control.try_send(Control::HandOver);
                        }
                        NOT_OWNED if mine => {
                            let _ = control.try_send(Control::TakeOver);
                        }
                        NOT_OWNED => shared.set_owner(index, preferred),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Applies what other nodes add to the directory's stream while this node does not write it.
pub(super) async fn follow_directory(
    shared: Arc<Shared>,
    client: async_nats::Client,
    changes: mpsc::Sender<ClusterChange>,
) {
    let config = &shared.config;
    let index = shared.directory();
    let name = name_of(index, config.partitions);
    let mut stream = loop {
        match PartitionStream::open(client.clone(), name, config.replicas, config.append_timeout).await {
            Ok(stream) => break stream,
            Err(e) => tracing::warn!(error = %e, "cannot open the directory's stream to follow it yet"),
        }
        tokio::time::sleep(FOLLOW_EVERY * 10).await;
    };
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shared.directory_wanted.notified() => {}
        }
        if changes.is_closed() {
            return;
        }
        if shared.status(index) != NOT_OWNED {
            continue;
        }
        let _catching_up = shared.directory_catch_up.lock().await;
        let applied = shared.directory_applied.load(Ordering::Acquire);
        // Only the last sequence: the claims' epochs are no follower's business.
        let read = match stream.last_seq().await {
            Ok(last_seq) => stream.records(applied + 1, last_seq).await,
            Err(e) => Err(e),
        };
        let followed = match read {
            Ok(records) => apply_directory(&shared, &changes, records).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = followed {
            tracing::warn!(error = %e, "could not follow the directory's stream");
        }
    }
}

/// Hands the batches of `records` (the directory stream's, after what this node applied) to the
/// engine, one at a time, waiting for each to be applied.
pub(super) async fn apply_directory(
    shared: &Shared,
    changes: &mpsc::Sender<ClusterChange>,
    records: Vec<(u64, Record)>,
) -> Result<(), StreamJournalError> {
    for (seq, record) in records {
        if let Record::Batch { payload, .. } = record {
            let entries = decode_batch_entries(&payload).map_err(|reason| StreamJournalError::Audit {
                stream: StreamName::Directory,
                reason: crate::fence::AuditError::Damaged { seq, reason },
            })?;
            let (applied, done) = oneshot::channel();
            if changes.send(ClusterChange::Directory { entries, applied }).await.is_err() || done.await.is_err() {
                return Err(StreamJournalError::Config("the engine no longer applies the directory's changes".into()));
            }
        }
        shared.directory_applied_to(seq);
    }
    Ok(())
}
