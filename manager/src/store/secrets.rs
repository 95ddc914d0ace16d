//! Secrets (node seeds, hosted nodes' TLS keys, command tasks' secrets) as the
//! store keeps them: `data` sealed with the cluster's data key, so the raft log and
//! snapshots never hold it in the clear. Readers get it opened.

use lnswarm_common::api::Secret;

use super::{keys, Store, StoreError, TxnBuilder};

/// The secret `id`, its data opened.
pub fn get(store: &Store, id: &str) -> Result<Option<Secret>, StoreError> {
    let key = keys::secret(id);
    let Some((_, mut secret)) = store.get::<Secret>(&key)? else {
        return Ok(None);
    };
    secret.data = store.open_sealed(&key, &secret.data)?;
    Ok(Some(secret))
}

/// Adds the write of `secret`, its data sealed, with watch `tags`.
pub fn put(
    store: &Store,
    txn: TxnBuilder,
    secret: &Secret,
    tags: impl IntoIterator<Item = impl Into<String>>,
) -> Result<TxnBuilder, StoreError> {
    let key = keys::secret(&secret.id);
    let sealed = Secret {
        data: store.seal(&key, &secret.data)?,
        ..secret.clone()
    };
    Ok(txn.put_tagged(key, &sealed, tags))
}
