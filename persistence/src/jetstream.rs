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
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use std::time::Duration;

/// The largest record a partition's stream takes.
const MAX_RECORD_BYTES: i32 = 1 << 20;

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
        Ok(PartitionStream { js, stream, name })
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

    /// The stream's last sequence number and the highest epoch claimed in it.
    pub async fn tail(&mut self) -> Result<Tail, StreamError> {
        let last_seq = self.stream.info().await.map_err(jetstream_error)?.state.last_sequence;
        let epoch = match self.stream.direct_get_last_for_subject(self.name.control_subject()).await {
            Ok(message) => match self.decode(message.sequence, &message.payload)? {
                Record::Epoch { epoch, .. } => epoch,
                Record::Batch { .. } => 0,
            },
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => 0,
            Err(e) => return Err(jetstream_error(e)),
        };
        Ok(Tail { last_seq, epoch })
    }

    /// The records from sequence `from` to `to`, in order.
    pub async fn records(&self, from: u64, to: u64) -> Result<Vec<(u64, Record)>, StreamError> {
        let mut records = Vec::new();
        for seq in from..=to {
            let message = self.stream.direct_get(seq).await.map_err(jetstream_error)?;
            records.push((seq, self.decode(seq, &message.payload)?));
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
