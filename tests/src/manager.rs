//! A single real `lnswarm-manager` for tests: `init` in a temporary directory on a
//! free loopback port, with the operator credential it writes.

use std::{path::PathBuf, process::Command, time::Duration};

use lnswarm_common::{credentials::Credentials, pki::Role, tls};
use tonic::transport::Channel;

use crate::{bin_path, certs::TestCa, free_addr, process::Proc, wait};

pub struct TestManager {
    pub addr: String,
    pub data_dir: PathBuf,
    pub proc: Proc,
}

impl TestManager {
    /// `lnswarm-manager init` in `dir/manager`, on the test's CA if given.
    pub async fn init(dir: &std::path::Path, ca: Option<&TestCa>) -> TestManager {
        Self::init_with(dir, ca, &[]).await
    }

    /// Like [`Self::init`], with more `init` flags (`--cert-expiry 10s`).
    pub async fn init_with(
        dir: &std::path::Path,
        ca: Option<&TestCa>,
        flags: &[&str],
    ) -> TestManager {
        let addr = free_addr();
        let data_dir = dir.join("manager");
        let mut cmd = Command::new(bin_path("lnswarm-manager"));
        cmd.args(["init", "--serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--listen", &addr])
            .args(flags);
        if let Some(ca) = ca {
            let (cert, key) = ca.write(dir);
            cmd.arg("--ca-cert").arg(cert).arg("--ca-key").arg(key);
        }
        let proc = Proc::spawn("manager", cmd, dir);
        let m = TestManager {
            addr,
            data_dir,
            proc,
        };
        m.wait_ready().await;
        m
    }

    /// Waits until the manager answers an authenticated call.
    pub async fn wait_ready(&self) {
        let dir = self.operator_dir();
        let addr = self.addr.clone();
        wait::until("manager to serve", Duration::from_secs(30), || {
            let dir = dir.clone();
            let addr = addr.clone();
            async move {
                let creds = Credentials::load(&dir).ok()?;
                let ch = tls::connect(&addr, &creds.client_tls().ok()?, Role::Manager)
                    .await
                    .ok()?;
                lnswarm_common::api::control_client::ControlClient::new(ch)
                    .get_cluster_info(lnswarm_common::api::GetClusterInfoRequest {})
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
    }

    pub fn operator_dir(&self) -> PathBuf {
        self.data_dir.join("operator")
    }

    pub fn operator(&self) -> Credentials {
        Credentials::load(&self.operator_dir()).expect("operator credentials")
    }
}

impl crate::Cluster for TestManager {
    fn ctl(&self) -> Command {
        TestManager::ctl(self)
    }

    fn manager_arg(&self) -> String {
        self.addr.clone()
    }

    fn any_addr(&self) -> String {
        self.addr.clone()
    }

    fn operator(&self) -> Credentials {
        TestManager::operator(self)
    }

    async fn channel_as(&self, creds: Option<&Credentials>) -> Channel {
        TestManager::channel_as(self, creds).await
    }
}

impl TestManager {
    /// A channel presenting `creds` (or no certificate), trusting the cluster CA.
    pub async fn channel_as(&self, creds: Option<&Credentials>) -> Channel {
        let ca = self.operator().ca_pem;
        let tls = match creds {
            Some(c) => tls::client_config(&ca, Some((&c.cert_pem, &c.key_pem))).unwrap(),
            None => tls::client_config(&ca, None).unwrap(),
        };
        tls::connect(&self.addr, &tls, Role::Manager)
            .await
            .expect("connect to manager")
    }

    /// `lnswarmctl` with this manager and the operator credential.
    pub fn ctl(&self) -> Command {
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.env("LNSWARM_MANAGER", &self.addr)
            .env("LNSWARM_CREDENTIALS", self.operator_dir());
        cmd
    }
}
