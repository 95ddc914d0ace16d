//! `lnswarm-manager join`: a new manager gets a manager certificate with the manager
//! join token (the CA is pinned by the token's digest), asks the quorum to add it as
//! a voter, keeps the cluster's data key it is handed, and starts its raft node
//! empty; the leader catches it up (from a snapshot when the log was compacted).

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use lnswarm_common::{
    api::{raft_client::RaftClient, JoinRequest, RaftMember},
    pki::Role,
    tls,
};

use crate::{
    layout::{DataDir, ManagerConfig},
    store::at_rest::{key_file, write_key, DataKey},
};

pub struct JoinOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub advertise: Option<String>,
    pub token: String,
    /// Any manager of the cluster.
    pub manager: String,
}

/// What the first start of a joined manager's raft node needs.
pub struct JoinSeed {
    pub raft_id: u64,
    /// Members to dial before the store knows them.
    pub members: Vec<RaftMember>,
}

pub struct Joined {
    pub config: ManagerConfig,
    pub seed: JoinSeed,
}

pub async fn join(opts: JoinOptions) -> anyhow::Result<Joined> {
    let dir = DataDir::new(&opts.data_dir);
    dir.create_empty()?;
    let advertise = opts.advertise.unwrap_or_else(|| opts.listen.clone());

    let joined = lnswarm_common::join::join(&opts.manager, &opts.token, Role::Manager, &advertise)
        .await
        .context("getting a manager certificate")?;
    joined.credentials.save(&dir.credentials())?;
    let client_tls = joined.credentials.client_tls()?;

    // Any manager takes the request and hands it to the leader. A membership change
    // already in flight, or an election, makes it UNAVAILABLE for a moment: retry.
    let channel = tls::connect(&opts.manager, &client_tls, Role::Manager).await?;
    let mut client = RaftClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        match client
            .join(JoinRequest {
                addr: advertise.clone(),
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(reason = %s.message(), "join not accepted yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => bail!("the cluster refused to add this manager: {}", s.message()),
        }
    };
    // A cluster from before data keys hands none; this manager then fetches the
    // cluster's once its leader has made one (see `data_key`).
    let data_key = DataKey::from_bytes(&answer.data_key).unwrap_or_else(DataKey::generate);
    write_key(&key_file(dir.root()), &data_key, None)?;

    let config = ManagerConfig {
        id: joined.id.clone(),
        cluster_id: joined.cluster_id,
        listen: opts.listen,
        advertise,
    };
    dir.write_config(&config)?;
    Ok(Joined {
        config,
        seed: JoinSeed {
            raft_id: answer.raft_id,
            members: answer.members,
        },
    })
}
