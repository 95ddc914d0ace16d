//! Wakes consumers of applied changes by tag (for example `agent/<id>`), so a
//! dispatcher stream wakes only for its own agent instead of testing every change
//! against every subscriber. A subscriber sees the latest index that touched its tag
//! and reads what changed from the change log; bursts of changes coalesce.

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::watch;

/// The tag every applied change wakes.
pub const ALL: &str = "";

#[derive(Default)]
pub struct WatchHub {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl WatchHub {
    /// A receiver whose value is the last index that touched `tag`.
    pub fn subscribe(&self, tag: &str) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().expect("watch hub lock");
        senders
            .entry(tag.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub(super) fn notify<'a>(&self, index: u64, tags: impl Iterator<Item = &'a String>) {
        let mut senders = self.senders.lock().expect("watch hub lock");
        for tag in tags.map(String::as_str).chain(std::iter::once(ALL)) {
            if let Some(tx) = senders.get(tag) {
                if tx.receiver_count() == 0 {
                    senders.remove(tag);
                } else {
                    tx.send_replace(index);
                }
            }
        }
    }

    /// Wakes everyone (after a snapshot replaced the whole state).
    pub(super) fn notify_all(&self, index: u64) {
        let senders = self.senders.lock().expect("watch hub lock");
        for tx in senders.values() {
            tx.send_replace(index);
        }
    }
}
