//! A partition's stream in NATS JetStream (SPEC section 14, `design/CLUSTER.md`): the appends
//! [`crate::fence`] asks for, sent with JetStream's compare-and-set headers, and the stream read
//! back.
//!
//! Partition `n` is the stream `LH_P{n}`: its claims on the subject `lh.p.{n}.ctl`, its batches
//! on `lh.p.{n}.log`, each record in the checksummed envelope of
//! [`crate::format::encode_stream_record`]. The stream is replicated (three copies in a cluster),
//! refuses deletes, and lets any replica answer direct reads.

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
    #[error("record {seq} of partition {partition}: {reason}")]
    Damaged {
        /// The partition.
        partition: u32,
        /// The record's sequence number.
        seq: u64,
        /// What is wrong with it.
        reason: FormatError,
    },
}

fn jetstream_error(e: impl std::fmt::Display) -> StreamError {
    StreamError::JetStream(e.to_string())
}

/// One partition's stream.
pub struct PartitionStream {
    js: jetstream::Context,
    stream: stream::Stream,
    partition: u32,
}

impl PartitionStream {
    /// The stream of `partition`, created with `replicas` copies if it is not there yet.
    /// Appends wait `timeout` for their answer.
    pub async fn open(
        client: async_nats::Client,
        partition: u32,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Self, StreamError> {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let config = stream::Config {
            name: format!("LH_P{partition}"),
            subjects: vec![control_subject(partition), log_subject(partition)],
            num_replicas: replicas,
            deny_delete: true,
            allow_direct: true,
            max_message_size: MAX_RECORD_BYTES,
            ..stream::Config::default()
        };
        let stream = js.get_or_create_stream(config).await.map_err(jetstream_error)?;
        Ok(PartitionStream { js, stream, partition })
    }

    /// Sends `append` and waits for the stream's answer.
    pub async fn append(&self, append: &Append) -> Stored {
        let subject = match append.record {
            Record::Epoch { .. } => control_subject(self.partition),
            Record::Batch { .. } => log_subject(self.partition),
        };
        let Ok(payload) = encode_stream_record(self.partition, &append.record) else {
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
        let epoch = match self.stream.direct_get_last_for_subject(control_subject(self.partition)).await {
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
        decode_stream_record(self.partition, payload).map_err(|reason| StreamError::Damaged {
            partition: self.partition,
            seq,
            reason,
        })
    }
}

/// The subject of partition `partition`'s claims.
fn control_subject(partition: u32) -> String {
    format!("lh.p.{partition}.ctl")
}

/// The subject of partition `partition`'s batches.
fn log_subject(partition: u32) -> String {
    format!("lh.p.{partition}.log")
}
