//! The authorization matrix: every RPC of every service, called by every kind of
//! caller, over real mTLS against a real manager (and, for the Node API, a server
//! carrying the same authorization layer scoped to one node). Each call must be
//! refused or let through exactly as the one table in `common/src/authz/table.rs`
//! says. A refused call never reaches a handler; a call that is let through may
//! still fail in its handler (empty requests are invalid), but never with
//! UNAUTHENTICATED or PERMISSION_DENIED.

use std::sync::Arc;

use lnswarm_common::{
    api::all_method_paths,
    authz::{access_for, Access, AuthzLayer, NodeScope},
    credentials::Credentials,
    pki::{PeerVerifier, Role},
    tls,
};
use lnswarm_tests::{
    certs::{fake_node_id, TestCa},
    free_addr,
    manager::TestManager,
    raw_grpc,
};
use tonic::Code;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Unauthenticated,
    PermissionDenied,
    Allowed,
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    NoCertificate,
    ForeignCa,
    Expired,
    TwoOus,
    OtherCluster,
    Manager,
    Worker,
    Operator,
    HostedNode,
    OwnerOfA,
    OwnerOfB,
    /// A read-only device of node A's owner.
    ViewerOfA,
    App,
}

const CALLERS: [Caller; 13] = [
    Caller::NoCertificate,
    Caller::ForeignCa,
    Caller::Expired,
    Caller::TwoOus,
    Caller::OtherCluster,
    Caller::Manager,
    Caller::Worker,
    Caller::Operator,
    Caller::HostedNode,
    Caller::OwnerOfA,
    Caller::OwnerOfB,
    Caller::ViewerOfA,
    Caller::App,
];

/// Scheduler RPCs whose request names a node (field 1, bytes).
const NAMES_A_NODE: &[&str] = &[
    "/lnswarm.v1.Scheduler/Schedule",
    "/lnswarm.v1.Scheduler/GetNodeInfo",
    "/lnswarm.v1.Scheduler/AddOutgoingWebhook",
    "/lnswarm.v1.Scheduler/ListOutgoingWebhooks",
    "/lnswarm.v1.Scheduler/DeleteWebhooks",
    "/lnswarm.v1.Scheduler/RotateOutgoingWebhookSecret",
    "/lnswarm.v1.Scheduler/ListPairings",
    "/lnswarm.v1.Scheduler/RenewDeviceCertificate",
];

fn role_of(caller: Caller) -> Option<Role> {
    match caller {
        Caller::Manager => Some(Role::Manager),
        Caller::Worker => Some(Role::Worker),
        Caller::Operator => Some(Role::Operator),
        Caller::HostedNode => Some(Role::Node),
        Caller::OwnerOfA | Caller::OwnerOfB => Some(Role::User),
        Caller::ViewerOfA => Some(Role::Viewer),
        Caller::App => Some(Role::App),
        _ => None,
    }
}

/// What the table says should happen. `node_server` is true for the Node API server
/// (which serves node A).
fn expected(path: &str, caller: Caller) -> Expect {
    let access = access_for(path)
        .unwrap_or_else(|| panic!("{path} is missing from the authorization table"));
    if matches!(
        caller,
        Caller::ForeignCa | Caller::Expired | Caller::TwoOus | Caller::OtherCluster
    ) {
        return Expect::Unauthenticated;
    }
    let Some(role) = role_of(caller) else {
        return if matches!(access, Access::Open | Access::Anonymous) {
            Expect::Allowed
        } else {
            Expect::Unauthenticated
        };
    };
    match access {
        Access::Open | Access::Anonymous => Expect::Allowed,
        Access::Roles(roles) if roles.contains(&role) => Expect::Allowed,
        Access::Roles(_) => Expect::PermissionDenied,
        Access::Owner if role != Role::User => Expect::PermissionDenied,
        Access::OwnerRead if !matches!(role, Role::User | Role::Viewer) => Expect::PermissionDenied,
        Access::Owner | Access::OwnerRead => {
            let acts_on_a = path.starts_with("/lnswarm.v1.Node/") || NAMES_A_NODE.contains(&path);
            if caller == Caller::OwnerOfB && acts_on_a {
                Expect::PermissionDenied
            } else {
                Expect::Allowed
            }
        }
    }
}

/// A protobuf body for `path`: node A's id where the request names a node, the
/// caller's own id for NodeCertificateStatus, a token for IssueNodeCertificate, a
/// root that is not one for RotateRootCA, else empty.
fn body_for(path: &str, caller_cn: &str, node_a: &str) -> Vec<u8> {
    let field1 = |bytes: &[u8]| {
        let mut b = vec![0x0a, bytes.len() as u8];
        b.extend_from_slice(bytes);
        b
    };
    if NAMES_A_NODE.contains(&path) {
        field1(&hex::decode(node_a).unwrap())
    } else if path == "/lnswarm.v1.CA/NodeCertificateStatus" {
        field1(caller_cn.as_bytes())
    } else if path == "/lnswarm.v1.Control/RotateRootCA" {
        // A root that is not PEM, so a call that passes the layer is refused by
        // the handler instead of rotating the test's root away.
        vec![0x0a, 1, b'x', 0x12, 1, b'y']
    } else if path == "/lnswarm.v1.CA/IssueNodeCertificate" {
        // A (malformed) token in field 2, so a call that passes the layer reaches the
        // token check instead of the renewal path's own refusals.
        vec![0x12, 1, b'x']
    } else {
        Vec::new()
    }
}

fn classify(code: Code) -> Expect {
    match code {
        Code::Unauthenticated => Expect::Unauthenticated,
        Code::PermissionDenied => Expect::PermissionDenied,
        _ => Expect::Allowed,
    }
}

struct Credentialed {
    caller: Caller,
    cn: String,
    creds: Option<Credentials>,
}

fn callers(ca: &TestCa, node_a: &str, node_b: &str) -> Vec<Credentialed> {
    let foreign = TestCa::new(ca.cluster_id());
    CALLERS
        .iter()
        .map(|&caller| {
            let (cn, creds) = match caller {
                Caller::NoCertificate => (String::new(), None),
                Caller::ForeignCa => ("op".into(), Some(foreign.mint(Role::Operator, "op"))),
                Caller::Expired => ("op".into(), Some(ca.mint_expired(Role::Operator, "op"))),
                Caller::TwoOus => (
                    "op".into(),
                    Some(ca.mint_raw(
                        "op",
                        &["lnswarm-operator", "swarm-manager"],
                        ca.cluster_id(),
                    )),
                ),
                Caller::OtherCluster => (
                    "op".into(),
                    Some(ca.mint_raw("op", &["lnswarm-operator"], "another-cluster")),
                ),
                Caller::Manager => (
                    "test-manager".into(),
                    Some(ca.mint(Role::Manager, "test-manager")),
                ),
                Caller::Worker => (
                    "test-worker".into(),
                    Some(ca.mint(Role::Worker, "test-worker")),
                ),
                Caller::Operator => (
                    "test-operator".into(),
                    Some(ca.mint(Role::Operator, "test-operator")),
                ),
                Caller::HostedNode => (node_a.to_string(), Some(ca.mint(Role::Node, node_a))),
                Caller::OwnerOfA => {
                    let cn = format!("{node_a}/phone");
                    (cn.clone(), Some(ca.mint(Role::User, &cn)))
                }
                Caller::OwnerOfB => {
                    let cn = format!("{node_b}/phone");
                    (cn.clone(), Some(ca.mint(Role::User, &cn)))
                }
                Caller::ViewerOfA => {
                    let cn = format!("{node_a}/tablet");
                    (cn.clone(), Some(ca.mint(Role::Viewer, &cn)))
                }
                Caller::App => ("app/test".into(), Some(ca.mint(Role::App, "app/test"))),
            };
            Credentialed { caller, cn, creds }
        })
        .collect()
}

/// A server for node A's Node API with the same TLS stack and authorization layer
/// a hosted node uses; calls that pass the layer reach the router's fallback.
async fn node_api_server(ca: &TestCa, node_a: &str) -> String {
    let addr = free_addr();
    let server_creds = ca.mint(Role::Node, node_a);
    let verifier = PeerVerifier::new(ca.ca.cert_pem(), ca.cluster_id()).unwrap();
    let tls_config = tls::server_config(&server_creds.cert_pem, &server_creds.key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let (_, health) = tonic_health::server::health_reporter();
    let layer = AuthzLayer::new(verifier, NodeScope::Node(node_a.to_string()));
    tokio::spawn(lnswarm_common::grpc_server::serve(
        listener,
        tls_config,
        layer,
        tonic::service::Routes::new(health),
        Default::default(),
        std::future::pending(),
    ));
    addr
}

async fn channel(
    addr: &str,
    server_role: Role,
    ca_pem: &str,
    creds: Option<&Credentials>,
) -> tonic::transport::Channel {
    let tls = tls::client_config(
        ca_pem,
        creds.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
    )
    .unwrap();
    tls::connect(addr, &tls, server_role)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_admits_exactly_the_callers_the_table_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("matrix-cluster");
    let manager = TestManager::init(dir.path(), Some(&ca)).await;
    let node_a = fake_node_id(0xaa);
    let node_b = fake_node_id(0xbb);
    let node_addr = node_api_server(&ca, &node_a).await;

    let mut paths = all_method_paths();
    paths.push("/grpc.health.v1.Health/Check".into());
    assert!(paths.len() > 50, "the protos define every service");

    let mut mismatches = Vec::new();
    let mut calls = 0;
    for who in callers(&ca, &node_a, &node_b) {
        let ca_pem = ca.ca.cert_pem();
        let to_manager = channel(&manager.addr, Role::Manager, ca_pem, who.creds.as_ref()).await;
        let to_node = channel(&node_addr, Role::Node, ca_pem, who.creds.as_ref()).await;
        for path in &paths {
            let target = if path.starts_with("/lnswarm.v1.Node/") {
                to_node.clone()
            } else {
                to_manager.clone()
            };
            let code = raw_grpc::call(target, path, body_for(path, &who.cn, &node_a)).await;
            calls += 1;
            let want = expected(path, who.caller);
            if classify(code) != want {
                mismatches.push(format!(
                    "{:?} -> {path}: got {code:?}, want {want:?}",
                    who.caller
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {calls} calls disagree with the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The manager kept serving through all of it.
    assert!(manager.proc.pid() > 0);
    let _ = Arc::new(());
}
