//! `lnswarm-manager join`: a new manager gets a manager certificate with the manager
//! join token (the CA is pinned by the token's digest), asks the quorum to add it as
//! a voter, and starts its raft node empty; the leader catches it up (from a
//! snapshot when the log was compacted).

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use lnswarm_common::{
    api::{raft_client::RaftClient, JoinRequest, Manager},
    credentials::Credentials,
    pki::Role,
    tls,
};

use crate::{
    layout::{open_db, DataDir, ManagerConfig},
    store::{
        raft::{RaftConfig, RaftOptions},
        Store,
    },
};

pub struct JoinOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub advertise: Option<String>,
    pub token: String,
    /// Any manager of the cluster.
    pub manager: String,
    pub raft: RaftConfig,
}

pub struct Joined {
    pub config: ManagerConfig,
    pub credentials: Credentials,
    pub store: Store,
    pub manager: Manager,
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

    let config = ManagerConfig {
        id: joined.id.clone(),
        cluster_id: joined.cluster_id,
        listen: opts.listen,
        advertise: advertise.clone(),
    };
    dir.write_config(&config)?;
    let store = Store::open_raft(
        open_db(&dir)?,
        RaftOptions {
            manager_id: joined.id.clone(),
            addr: advertise.clone(),
            tls: client_tls,
            config: opts.raft,
            join_as: Some(answer.raft_id),
            seeds: answer.members,
            force_new_cluster: false,
        },
    )?;
    Ok(Joined {
        manager: Manager {
            id: joined.id,
            addr: advertise,
            raft_id: answer.raft_id,
        },
        config,
        credentials: joined.credentials,
        store,
    })
}
