//! Bad input to the CA gets a clear gRPC status and the manager keeps serving:
//! a malformed CSR, a CSR asking for another OU than its token grants, a malformed
//! token, and an oversize message.

use lnswarm_common::{
    api::{
        ca_client::CaClient, control_client::ControlClient, GetClusterInfoRequest,
        IssueNodeCertificateRequest,
    },
    pki::{new_key_and_csr, Role},
};
use lnswarm_tests::manager::TestManager;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_refuses_bad_requests_clearly_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let m = TestManager::init(tmp.path(), None).await;
    let mut control = ControlClient::new(m.channel_as(Some(&m.operator())).await);
    let token = control
        .get_join_token(lnswarm_common::api::GetJoinTokenRequest {
            role: 0,
            rotate: false,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    // Unauthenticated callers may ask for certificates, so use no certificate.
    let mut ca = CaClient::new(m.channel_as(None).await);
    let issue = |csr: Vec<u8>, token: &str| IssueNodeCertificateRequest {
        csr,
        token: token.to_string(),
        addr: String::new(),
        lease_epoch: 0,
    };

    let err = ca
        .issue_node_certificate(issue(
            b"-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n"
                .to_vec(),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "malformed CSR: {err:?}");

    let err = ca
        .issue_node_certificate(issue(vec![0xff, 0xfe], &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "non-PEM CSR: {err:?}");

    let csr = new_key_and_csr("sneaky", Some(Role::Manager))
        .unwrap()
        .csr_pem;
    let err = ca
        .issue_node_certificate(issue(csr.into_bytes(), &token))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "CSR asking for swarm-manager with a worker token: {err:?}"
    );
    assert!(err.message().contains("swarm-manager"), "{}", err.message());

    let csr = new_key_and_csr("ok", Some(Role::Worker)).unwrap().csr_pem;
    let err = ca
        .issue_node_certificate(issue(csr.clone().into_bytes(), "LNSTKN-1-zz"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "malformed token: {err:?}"
    );

    let err = ca
        .issue_node_certificate(issue(vec![b'A'; 2 * 1024 * 1024], &token))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "oversize message: {err:?}"
    );

    // Still serving, and a good request still works.
    let ok = ca
        .issue_node_certificate(issue(csr.into_bytes(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.role, "swarm-worker");
    control
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .expect("manager keeps serving");
    assert!(
        m.proc.log_text().lines().all(|l| !l.contains("panicked")),
        "no panic in the manager log"
    );
}
