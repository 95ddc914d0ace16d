//! `lnswarm-manager init`: creates a cluster in an empty data directory: the
//! cluster's data key, the root CA (new, or one the operator brings), the cluster
//! object with both join tokens, this manager's certificate, and an operator
//! credential for lnswarmctl.

use std::path::PathBuf;

use anyhow::Context;
use lnswarm_common::{
    api::{ClusterRecord, Manager},
    credentials::Credentials,
    ids::new_id,
    pki::{ip_of_address, new_key_and_csr, subject_of, ClusterCa, Role},
};

use crate::{
    ca::issue_and_record,
    cluster,
    layout::{open_db, DataDir, ManagerConfig},
    store::{
        at_rest::{key_file, write_key, DataKey},
        keys, Store, TxnBuilder,
    },
};

pub struct InitOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    pub advertise: Option<String>,
    /// PEM certificate and key of a root CA the operator brings; its O becomes the
    /// cluster id.
    pub external_ca: Option<(String, String)>,
    /// The cluster's certificate lifetime, if not the default.
    pub cert_expiry: Option<std::time::Duration>,
}

pub struct Initialized {
    pub config: ManagerConfig,
    pub record: ClusterRecord,
    /// The database `init` wrote, for the raft store that takes it over.
    pub db: sled::Db,
}

pub async fn init(opts: InitOptions) -> anyhow::Result<Initialized> {
    let dir = DataDir::new(&opts.data_dir);
    dir.create_empty()?;

    let ca = match &opts.external_ca {
        Some((cert, key)) => {
            let cluster_id = subject_of(cert)
                .context("reading the external CA certificate")?
                .organizations
                .into_iter()
                .next()
                .context("the external CA certificate must name the cluster id in its O")?;
            ClusterCa::load(&cluster_id, cert, key).context("loading the external CA")?
        }
        None => ClusterCa::create(&new_id()).context("creating the root CA")?,
    };

    let data_key = DataKey::generate();
    write_key(&key_file(dir.root()), &data_key, None)?;

    let advertise = opts
        .advertise
        .clone()
        .unwrap_or_else(|| opts.listen.clone());
    let manager_id = new_id();
    let db = open_db(&dir)?;
    let store = Store::open_local(
        db.clone(),
        Some((manager_id.clone(), advertise.clone())),
        Some(data_key),
    )?;
    let mut settings = cluster::default_settings();
    if let Some(expiry) = opts.cert_expiry {
        settings = cluster::settings::apply(
            &settings,
            &lnswarm_common::api::ClusterSettingsUpdate {
                cert_expiry_secs: Some(expiry.as_secs()),
                ..Default::default()
            },
        )
        .context("--cert-expiry")?;
    }
    let record = cluster::create(&store, &ca, settings).await?;

    let host: Vec<std::net::IpAddr> = ip_of_address(&advertise).into_iter().collect();
    let key = new_key_and_csr("manager", Some(Role::Manager))?;
    let cert = issue_and_record(&store, &key.csr_pem, Role::Manager, &manager_id, &host)
        .await
        .context("issuing the manager certificate")?;
    Credentials {
        cert_pem: cert,
        key_pem: key.key_pem,
        ca_pem: ca.cert_pem().to_string(),
    }
    .save(&dir.credentials())?;

    let operator_id = format!("operator-{}", &new_id()[..8]);
    let key = new_key_and_csr("operator", Some(Role::Operator))?;
    let cert = issue_and_record(&store, &key.csr_pem, Role::Operator, &operator_id, &[])
        .await
        .context("issuing the operator certificate")?;
    Credentials {
        cert_pem: cert,
        key_pem: key.key_pem,
        ca_pem: ca.cert_pem().to_string(),
    }
    .save(&dir.operator())?;

    let manager = Manager {
        id: manager_id.clone(),
        addr: advertise.clone(),
        raft_id: 1,
    };
    store
        .propose(
            TxnBuilder::new()
                .put(keys::manager(&manager_id), &manager)
                .build(),
        )
        .await?;

    let config = ManagerConfig {
        id: manager_id,
        cluster_id: record.cluster_id.clone(),
        listen: opts.listen,
        advertise,
    };
    dir.write_config(&config)?;
    Ok(Initialized { config, record, db })
}
