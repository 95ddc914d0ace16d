//! A hosted node is ready when its Node API answers gRPC health with SERVING over the
//! cluster's TLS (health is open to callers without a certificate).

use std::{future::Future, pin::Pin};

use lnswarm_common::{pki::Role, tls};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::executor::ReadinessCheck;

pub struct NodeApiHealth {
    pub addr: String,
    pub tls: tls::ClientTls,
    /// The node the task runs: another node answering on the port is not it.
    pub node_id: String,
}

impl ReadinessCheck for NodeApiHealth {
    fn ready(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let Ok(channel) = tls::connect(
                &self.addr,
                &self.tls,
                tls::ServerIdentity::exact(Role::Node, &self.node_id),
            )
            .await
            else {
                return false;
            };
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status == ServingStatus::Serving as i32)
                .unwrap_or(false)
        })
    }
}
