//! Which nodes are alive and which one should own each stream (`design/CLUSTER.md`, "Liveness
//! and ownership"). No I/O: the journal feeds heartbeats in and asks who is preferred.
//!
//! Every node announces itself every [`HEARTBEAT_EVERY`]; one not heard for [`DEAD_AFTER`] is
//! taken for dead. Each stream's preferred owner among the live nodes is chosen by rendezvous
//! hashing: the node with the highest hash of (node, stream). Every node computes the same
//! answer from the same live set, and a node joining or leaving moves only the streams it wins
//! or held (about one in N). Preference is not ownership: a node owns a stream only once its
//! claim is stored (`crate::fence`), so two nodes that disagree for a moment about who is alive
//! cannot both write.

use leasehold_engine::ids::sha256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a node announces itself.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// How long a node may stay silent before it is taken for dead.
pub const DEAD_AFTER: Duration = Duration::from_millis(1_500);

/// What a node announces: its name, where other nodes reach it, whether it takes streams yet
/// (a node that just started listens first, to learn who is alive), and whether it is leaving
/// (its streams then go to the others at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's name.
    pub node: String,
    /// Its HTTP address, as clients reach it.
    pub http: String,
    /// Its binary protocol's address.
    pub tcp: String,
    /// It has listened long enough to take streams: until then the others keep theirs.
    pub ready: bool,
    /// It is shutting down: it takes no stream, and gives up those it holds.
    pub leaving: bool,
}

/// The nodes heard from, and when.
#[derive(Debug, Default)]
pub struct Liveness {
    heard: BTreeMap<String, (u64, Heartbeat)>,
}

/// A node as this node last heard it ([`Liveness::nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeardNode {
    /// What it last announced.
    pub heartbeat: Heartbeat,
    /// How long it has been silent, in milliseconds.
    pub silent_ms: u64,
    /// Heard from within [`DEAD_AFTER`].
    pub alive: bool,
}

fn heard_lately(heard_at_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(heard_at_ms) < u64::try_from(DEAD_AFTER.as_millis()).unwrap_or(u64::MAX)
}

impl Liveness {
    /// Records `heartbeat`, received at `now_ms`.
    pub fn heard(&mut self, heartbeat: Heartbeat, now_ms: u64) {
        self.heard.insert(heartbeat.node.clone(), (now_ms, heartbeat));
    }

    /// The nodes alive at `now_ms`, ready and not leaving, by name: those streams go to.
    pub fn live(&self, now_ms: u64) -> Vec<&str> {
        self.heard
            .iter()
            .filter(|(_, (at, beat))| heard_lately(*at, now_ms) && beat.ready && !beat.leaving)
            .map(|(node, _)| node.as_str())
            .collect()
    }

    /// What `node` last announced, if it is alive at `now_ms` and not leaving: a node requests
    /// may be sent to.
    pub fn reachable(&self, node: &str, now_ms: u64) -> Option<&Heartbeat> {
        let (at, heartbeat) = self.heard.get(node)?;
        (heard_lately(*at, now_ms) && !heartbeat.leaving).then_some(heartbeat)
    }

    /// Every node heard from, by name, as at `now_ms`.
    pub fn nodes(&self, now_ms: u64) -> Vec<HeardNode> {
        self.heard
            .values()
            .map(|(at, heartbeat)| HeardNode {
                heartbeat: heartbeat.clone(),
                silent_ms: now_ms.saturating_sub(*at),
                alive: heard_lately(*at, now_ms),
            })
            .collect()
    }
}

/// The node among `live` that should own stream `stream` (a partition's number, or any number
/// no partition has for the directory's); `None` when no node is live.
pub fn preferred_owner<'a>(stream: u32, live: &[&'a str]) -> Option<&'a str> {
    live.iter().copied().max_by_key(|node| (score(node, stream), *node))
}

fn score(node: &str, stream: u32) -> u64 {
    let mut bytes = Vec::with_capacity(node.len() + 5);
    bytes.extend_from_slice(node.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&stream.to_be_bytes());
    let digest = sha256(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, leaving: bool) -> Heartbeat {
        Heartbeat { node: node.into(), http: String::new(), tcp: String::new(), ready: true, leaving }
    }

    #[test]
    fn a_node_is_live_until_it_is_silent_for_the_timeout_or_says_it_is_leaving() {
        let mut liveness = Liveness::default();
        liveness.heard(beat("a", false), 1_000);
        liveness.heard(beat("b", false), 1_200);
        assert_eq!(liveness.live(1_000), vec!["a", "b"]);
        assert_eq!(liveness.live(2_499), vec!["a", "b"]);
        assert_eq!(liveness.live(2_500), vec!["b"], "a was silent for 1.5 s");
        liveness.heard(beat("b", true), 2_600);
        assert!(liveness.live(2_600).is_empty(), "b is leaving");
        liveness.heard(beat("a", false), 2_700);
        assert_eq!(liveness.live(2_700), vec!["a"], "a is back");
        liveness.heard(Heartbeat { ready: false, ..beat("c", false) }, 2_700);
        assert_eq!(liveness.live(2_700), vec!["a"], "c is not ready yet");
    }

    #[test]
    fn every_stream_has_one_preferred_owner_and_a_departure_moves_only_its_streams() {
        let three = ["a", "b", "c"];
        let two = ["a", "c"];
        let mut held = BTreeMap::new();
        for stream in 0..256 {
            let owner = preferred_owner(stream, &three).unwrap_or_else(|| panic!("no owner"));
            *held.entry(owner).or_insert(0) += 1;
            let after = preferred_owner(stream, &two).unwrap_or_else(|| panic!("no owner"));
            if owner != "b" {
                assert_eq!(after, owner, "stream {stream} moved though its owner stayed");
            }
        }
        for node in three {
            let count = held.get(node).copied().unwrap_or(0);
            assert!((40..=130).contains(&count), "{node} would own {count} of 256 streams: {held:?}");
        }
        assert_eq!(preferred_owner(7, &[]), None);
        let reversed = ["c", "b", "a"];
        assert_eq!(preferred_owner(7, &three), preferred_owner(7, &reversed), "the order of the live set matters not");
    }
}
