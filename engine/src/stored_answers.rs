//! The answers to requests sent with an idempotency key that are not checkouts (admin changes,
//! renewals and releases): remembered for [`IDEMPOTENCY_WINDOW_S`], so that a retry gets the
//! first answer again instead of a second change. Checkouts keep their grants with their license
//! instead ([`crate::decide::IdempotentGrant`]).
//!
//! The book is journaled as directory changes and kept in snapshots. It is keyed by a digest of
//! the request's idempotency key, never by the key itself: the key derives the ids and secrets
//! of what the request created ([`crate::ids::SeededIds::for_idempotency_key`]), and the journal
//! must not hold what reproduces a secret.

use crate::decide::{Idempotency, IDEMPOTENCY_WINDOW_S};
use crate::ids::sha256;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// The largest answer remembered; a larger one is decided again on a retry (no answer of the
/// admin API that changes something comes near it).
pub const MAX_REMEMBERED_ANSWER_BYTES: usize = 64 * 1024;

/// The most answers remembered: past it the oldest is forgotten first (its retry is then carried
/// out again), so clients sending a fresh key with every release cannot grow the book without
/// bound within a day.
pub const MAX_REMEMBERED_ANSWERS: usize = 200_000;

/// A remembered answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The digest of the request it answered (another request with the same key is refused).
    pub request: [u8; 32],
    /// The HTTP status.
    pub status: u16,
    /// The body's media type, when it has one.
    pub content_type: Option<String>,
    /// The body; `None` when the answer holds a secret, which is never stored: the request is
    /// then carried out again and derives the same secret (see the module documentation).
    pub body: Option<Vec<u8>>,
    /// When it was answered.
    pub at: Timestamp,
}

/// Where a request's answer is filed: a digest of its idempotency key.
pub fn answer_key(idempotency: &Idempotency) -> [u8; 32] {
    let mut tagged = b"leasehold: stored answer".to_vec();
    tagged.extend_from_slice(&idempotency.key);
    sha256(&tagged)
}

/// The remembered answers of the last [`IDEMPOTENCY_WINDOW_S`].
#[derive(Debug, Clone, Default)]
pub struct AnswerBook {
    by_key: HashMap<[u8; 32], StoredAnswer>,
    /// Keys in the order they were answered, for expiry.
    order: VecDeque<([u8; 32], Timestamp)>,
}

impl AnswerBook {
    /// Files `answer` under `key`, first forgetting the answers that expired by its time (so a
    /// replay of the journal forgets exactly what the running server forgot).
    pub fn record(&mut self, key: [u8; 32], answer: StoredAnswer) {
        self.expire_until(answer.at);
        while self.by_key.len() >= MAX_REMEMBERED_ANSWERS {
            let Some((oldest, at)) = self.order.pop_front() else { break };
            if self.by_key.get(&oldest).is_some_and(|a| a.at == at) {
                self.by_key.remove(&oldest);
            }
        }
        self.order.push_back((key, answer.at));
        self.by_key.insert(key, answer);
    }

    /// The answer filed under `key` at most [`IDEMPOTENCY_WINDOW_S`] before `now`.
    pub fn get(&self, key: &[u8; 32], now: Timestamp) -> Option<&StoredAnswer> {
        self.by_key.get(key).filter(|a| now < a.at.plus_secs(IDEMPOTENCY_WINDOW_S))
    }

    fn expire_until(&mut self, now: Timestamp) {
        while let Some((key, at)) = self.order.front().copied() {
            if now < at.plus_secs(IDEMPOTENCY_WINDOW_S) {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&key).is_some_and(|a| a.at == at) {
                self.by_key.remove(&key);
            }
        }
    }

    /// Every remembered answer with its key, oldest first (for a snapshot).
    pub fn to_vec(&self) -> Vec<([u8; 32], StoredAnswer)> {
        let filed =
            |(key, at): &([u8; 32], Timestamp)| self.by_key.get(key).filter(|a| a.at == *at).map(|a| (*key, a.clone()));
        self.order.iter().filter_map(filed).collect()
    }

    /// How many answers are remembered.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(at_s: i64, status: u16) -> StoredAnswer {
        StoredAnswer {
            request: [1; 32],
            status,
            content_type: Some("application/json".into()),
            body: Some(b"{}".to_vec()),
            at: Timestamp::from_secs(at_s),
        }
    }

    #[test]
    fn an_answer_is_found_for_a_day_and_forgotten_by_the_next_record_after_it() {
        let mut book = AnswerBook::default();
        book.record([7; 32], answer(1_000, 201));
        let day = IDEMPOTENCY_WINDOW_S as i64;
        assert_eq!(book.get(&[7; 32], Timestamp::from_secs(1_000 + day - 1)).map(|a| a.status), Some(201));
        assert!(book.get(&[7; 32], Timestamp::from_secs(1_000 + day)).is_none());
        book.record([8; 32], answer(1_000 + day, 200));
        assert_eq!(book.len(), 1, "the expired answer is dropped");
        assert_eq!(book.to_vec().iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![[8; 32]]);
    }

    #[test]
    fn a_key_answered_again_keeps_only_its_latest_answer() {
        let mut book = AnswerBook::default();
        book.record([7; 32], answer(1_000, 201));
        book.record([7; 32], answer(2_000, 200));
        assert_eq!(book.to_vec().len(), 1);
        assert_eq!(book.get(&[7; 32], Timestamp::from_secs(2_000)).map(|a| a.status), Some(200));
    }

    #[test]
    fn past_the_most_answers_the_oldest_are_forgotten_first() {
        let mut book = AnswerBook::default();
        let key = |n: usize| {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(n as u64).to_le_bytes());
            key
        };
        for n in 0..MAX_REMEMBERED_ANSWERS + 10 {
            book.record(key(n), answer(1_000, 200));
        }
        assert_eq!(book.len(), MAX_REMEMBERED_ANSWERS);
        let at = Timestamp::from_secs(1_000);
        assert!(book.get(&key(9), at).is_none() && book.get(&key(10), at).is_some());
    }

    #[test]
    fn a_directory_snapshot_keeps_the_answers() {
        use crate::directory::{Directory, DirectoryEvent};
        let mut directory = Directory::default();
        directory.apply(&DirectoryEvent::Answered { key: [7; 32], answer: answer(1_000, 201) });
        let restored = Directory::from_snapshot(directory.to_snapshot(), Vec::new());
        assert_eq!(restored.answer(&[7; 32], Timestamp::from_secs(1_001)), Some(&answer(1_000, 201)));
    }
}
