//! A partition's stream in NATS JetStream (SPEC section 14, `design/CLUSTER.md`): the appends
//! [`crate::fence`] asks for, sent with JetStream's compare-and-set headers, and the stream read
//! back.
//!
//! Partition `n` is the stream `LH_P{n}`: its claims on the subject `lh.p.{n}.ctl`, its batches
//! on `lh.p.{n}.log`, each record in the checksummed envelope of
//! [`crate::format::encode_stream_record`]. The directory's changes are a partition of their own,
//! the stream `LH_DIR` (`lh.dir.ctl`, `lh.dir.log`), fenced the same way. A stream is replicated
//! (three copies in a cluster), refuses deletes, and lets any replica answer direct reads.

use crate::fence::{Append, Record, Stored, Tail};
use crate::format::{decode_stream_record, encode_stream_record};
use crate::FormatError;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt as _;
use std::time::Duration;

/// The largest record a partition's stream takes.
const MAX_RECORD_BYTES: i32 = 1 << 20;

/// Up to how many records a read fetches one by one rather than through a consumer.
const FETCHED_ONE_BY_ONE: u64 = 32;

/// Why a partition's stream could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// JetStream refused or did not answer.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A record does not decode: it is damaged, or not Leasehold's.
    #[error("record {seq} of {stream}: {reason}")]
    Damaged {
        /// The stream.
        stream: StreamName,
        /// The record's sequence number.
        seq: u64,
        /// What is wrong with it.
        reason: FormatError,
    },
}

fn jetstream_error(e: impl std::fmt::Display) -> StreamError {
    StreamError::JetStream(e.to_string())
}

/// Which fenced stream: a partition's, or the directory's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamName {
    /// The stream of the licenses of one partition.
    Partition(u32),
    /// The stream of the directory's changes.
    Directory,
}

impl StreamName {
    /// The stream's name in JetStream.
    pub fn stream(self) -> String {
        match self {
            StreamName::Partition(n) => format!("LH_P{n}"),
            StreamName::Directory => "LH_DIR".to_owned(),
        }
    }

    /// The subject of its claims.
    fn control_subject(self) -> String {
        match self {
            StreamName::Partition(n) => format!("lh.p.{n}.ctl"),
            StreamName::Directory => "lh.dir.ctl".to_owned(),
        }
    }

    /// The subject of its batches.
    fn log_subject(self) -> String {
        match self {
            StreamName::Partition(n) => format!("lh.p.{n}.log"),
            StreamName::Directory => "lh.dir.log".to_owned(),
        }
    }

    /// What its records' checksums cover besides the record, so that a record copied into
    /// another stream does not decode there (no partition number reaches it).
    fn checksum_key(self) -> u32 {
        match self {
            StreamName::Partition(n) => n,
            StreamName::Directory => u32::MAX,
        }
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.stream())
    }
}

/// One fenced stream.
pub struct PartitionStream {
    js: jetstream::Context,
    stream: stream::Stream,
    name: StreamName,
    /// How long an answer (or the next record of a read) may take.
    timeout: Duration,
}

impl PartitionStream {
    /// The stream `name`, created with `replicas` copies if it is not there yet. Appends wait
    /// `timeout` for their answer.
    pub async fn open(
        client: async_nats::Client,
        name: StreamName,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Self, StreamError> {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let config = stream::Config {
            name: name.stream(),
            subjects: vec![name.control_subject(), name.log_subject()],
            num_replicas: replicas,
            deny_delete: true,
            allow_direct: true,
            max_message_size: MAX_RECORD_BYTES,
            ..stream::Config::default()
        };
        let stream = js.get_or_create_stream(config).await.map_err(jetstream_error)?;
        Ok(PartitionStream { js, stream, name, timeout })
    }

    /// Sends `append` and waits for the stream's answer.
    pub async fn append(&self, append: &Append) -> Stored {
        let subject = match append.record {
            Record::Epoch { .. } => self.name.control_subject(),
            Record::Batch { .. } => self.name.log_subject(),
        };
        let Ok(payload) = encode_stream_record(self.name.checksum_key(), &append.record) else {
            // A record that does not encode is never stored; nothing can follow it either.
            return Stored::WrongLastSequence;
        };
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(&append.msg_id)
            .expected_last_sequence(append.expected_last_seq);
        let acknowledged = match self.js.send_publish(subject, message).await {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        match acknowledged {
            Ok(ack) => Stored::At(ack.sequence),
            Err(e) => match e.kind() {
                PublishErrorKind::WrongLastSequence => Stored::WrongLastSequence,
                // No answer, or none that says whether it was stored: the fence retries it as it
                // was, and the message id keeps a stored one from being stored twice.
                _ => Stored::TimedOut,
            },
        }
    }

    /// The stream's last sequence number, as its leader answers.
    pub async fn last_seq(&mut self) -> Result<u64, StreamError> {
        Ok(self.stream.info().await.map_err(jetstream_error)?.state.last_sequence)
    }

    /// The stream's last sequence number and the highest epoch claimed in it.
    pub async fn tail(&mut self) -> Result<Tail, StreamError> {
        let last_seq = self.last_seq().await?;
        // Asked of the stream's leader, as the last sequence was: a replica that lags (direct
        // reads go to any) could name an older claim, and a claim built on it would not be
        // above the epoch that holds the stream.
        let epoch = match self.stream.get_last_raw_message_by_subject(&self.name.control_subject()).await {
            Ok(message) => match self.decode(message.sequence, &message.payload)? {
                Record::Epoch { epoch, .. } => epoch,
                Record::Batch { .. } => 0,
            },
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => 0,
            Err(e) => return Err(jetstream_error(e)),
        };
        Ok(Tail { last_seq, epoch })
    }

    /// The records from sequence `from` to `to`, in order. A few are fetched one by one (the
    /// directory's follower asks for the last few every poll); more are delivered by a consumer
    /// of the stream's leader, which streams them without a round trip each.
    pub async fn records(&self, from: u64, to: u64) -> Result<Vec<(u64, Record)>, StreamError> {
        if to < from {
            return Ok(Vec::new());
        }
        if to - from < FETCHED_ONE_BY_ONE {
            let mut records = Vec::new();
            for seq in from..=to {
                let message = match self.stream.direct_get(seq).await {
                    Ok(message) => message,
                    // The replica that answered has not caught up yet: the leader has the record.
                    Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
                        self.stream.get_raw_message(seq).await.map_err(jetstream_error)?
                    }
                    Err(e) => return Err(jetstream_error(e)),
                };
                records.push((seq, self.decode(seq, &message.payload)?));
            }
            return Ok(records);
        }
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
                ..Default::default()
            })
            .await
            .map_err(jetstream_error)?;
        let mut messages = consumer.messages().await.map_err(jetstream_error)?;
        let mut records = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or_default());
        let mut expected = from;
        while expected <= to {
            let message = match tokio::time::timeout(self.timeout, messages.next()).await {
                Ok(Some(message)) => message.map_err(jetstream_error)?,
                Ok(None) => return Err(jetstream_error(format!("{}: the read stopped at {expected}", self.name))),
                Err(_) => return Err(jetstream_error(format!("{}: no record {expected} in time", self.name))),
            };
            let seq = message.info().map_err(jetstream_error)?.stream_sequence;
            // The stream refuses deletes: every sequence up to its tail holds a record.
            if seq != expected {
                return Err(jetstream_error(format!("{}: record {seq} came where {expected} was due", self.name)));
            }
            records.push((seq, self.decode(seq, &message.payload)?));
            expected += 1;
        }
        Ok(records)
    }

    fn decode(&self, seq: u64, payload: &[u8]) -> Result<Record, StreamError> {
        decode_stream_record(self.name.checksum_key(), payload).map_err(|reason| StreamError::Damaged {
            stream: self.name,
            seq,
            reason,
        })
    }

    /// Which stream this is.
    pub fn name(&self) -> StreamName {
        self.name
    }
}
