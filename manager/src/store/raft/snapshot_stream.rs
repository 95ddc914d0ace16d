//! A snapshot streamed between managers (`StreamRaftSnapshot`): the first chunk
//! carries the raft message with its data taken out, the chunks after it carry
//! the data. The sender's split ([`chunks`], used by transport.rs) and the
//! receiver's reassembly ([`Reassembly`]) live together so the fuzz tests check one
//! against the other (issue 18, snapshot_stream_fuzz.rs). What is reassembled is
//! checked before raft sees it: the message is one raft-rs can take
//! (admissible.rs) and the data is a state the state machine can restore at the
//! snapshot's index, so a bad snapshot is refused with INVALID_ARGUMENT instead
//! of stopping the raft node that installs it.

use lnswarm_common::api::SnapshotChunk;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotStreamError {
    #[error("the snapshot stream is empty")]
    Empty,
    #[error("the first snapshot chunk's message is malformed: {0}")]
    Message(String),
    #[error("the first snapshot chunk carries a {0:?}, not a snapshot")]
    NotSnapshot(MessageType),
    #[error("the first snapshot chunk's message carries data; the data follows it")]
    DataInMessage,
    #[error("the snapshot message is not one raft can take: {0}")]
    Inadmissible(String),
    #[error("snapshot chunk {0} carries a message; only the first one may")]
    LateMessage(usize),
    #[error("the snapshot's state cannot be restored: {0}")]
    State(StoreError),
}

/// `m` (a snapshot message) as the chunks of a stream, its data in pieces of
/// `chunk_bytes`.
pub fn chunks(
    mut m: Message,
    chunk_bytes: usize,
) -> Result<Vec<SnapshotChunk>, protobuf::ProtobufError> {
    let data = m.mut_snapshot().take_data();
    let mut out = vec![SnapshotChunk {
        message: m.write_to_bytes()?,
        data: Vec::new(),
    }];
    out.extend(data.chunks(chunk_bytes.max(1)).map(|c| SnapshotChunk {
        message: Vec::new(),
        data: c.to_vec(),
    }));
    Ok(out)
}

/// A snapshot message being reassembled.
pub struct Reassembly {
    message: Message,
    data: Vec<u8>,
    chunks: usize,
}

impl Reassembly {
    /// Starts from the stream's first chunk.
    pub fn start(first: SnapshotChunk) -> Result<Self, SnapshotStreamError> {
        let message = Message::parse_from_bytes(&first.message)
            .map_err(|e| SnapshotStreamError::Message(e.to_string()))?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(SnapshotStreamError::NotSnapshot(message.get_msg_type()));
        }
        if !message.get_snapshot().get_data().is_empty() {
            return Err(SnapshotStreamError::DataInMessage);
        }
        super::admissible::message(&message).map_err(SnapshotStreamError::Inadmissible)?;
        Ok(Reassembly {
            message,
            data: first.data,
            chunks: 1,
        })
    }

    /// Adds the next chunk's data.
    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), SnapshotStreamError> {
        if !chunk.message.is_empty() {
            return Err(SnapshotStreamError::LateMessage(self.chunks));
        }
        self.chunks += 1;
        self.data.extend_from_slice(&chunk.data);
        Ok(())
    }

    /// The whole message, its snapshot holding the data, once the data is a
    /// state the state machine restores at the snapshot's index (decoded here
    /// and again when installed: snapshots are rare, a stopped raft node is not).
    pub fn finish(mut self) -> Result<Message, SnapshotStreamError> {
        let index = self.message.get_snapshot().get_metadata().index;
        crate::store::decode_snapshot(&self.data, index).map_err(SnapshotStreamError::State)?;
        self.message.mut_snapshot().data = self.data.into();
        Ok(self.message)
    }
}

#[cfg(test)]
#[path = "snapshot_stream_fuzz.rs"]
mod fuzz;
