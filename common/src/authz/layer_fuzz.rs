//! Fuzzes the authorization decision every call goes through ([`Authz::authorize`]):
//! the request path and the client certificate are the caller's bytes. Arbitrary
//! and mutated paths and certificates must be answered (admitted or refused with
//! the right code), never panic; a certificate the CA did not issue must never be
//! admitted, and a valid one is admitted exactly where the table says.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use proptest::prelude::*;
use rustls_pki_types::CertificateDer;
use tonic::Code;

use super::{super::table::TABLE, Authz, AuthzLayer, NodeScope};
use crate::{
    authz::{access_for, Access},
    fuzzing,
    pki::fuzz::{CORPUS, NODE},
    tls::PeerInfo,
};

fn layers() -> [AuthzLayer; 2] {
    [
        AuthzLayer::with_anonymous_limits(CORPUS.verifier.clone(), Default::default()),
        AuthzLayer::new(CORPUS.verifier.clone(), NodeScope::Node(NODE.clone())),
    ]
}

fn peer(cert: Option<Vec<u8>>) -> PeerInfo {
    PeerInfo {
        remote_addr: SocketAddr::from(([127, 0, 0, 1], 4242)),
        certificates: Arc::new(cert.into_iter().map(CertificateDer::from).collect()),
        verified: Arc::new(OnceLock::new()),
    }
}

fn decide(authz: &Authz, path: &str, cert: Option<Vec<u8>>) {
    let valid = cert.as_ref().is_none_or(|c| CORPUS.leaves.contains(c));
    let presented = cert.is_some();
    let p = peer(cert);
    // Twice: the second call takes the remembered-verification path.
    for _ in 0..2 {
        let decision = authz.authorize(path, Some(&p));
        match (access_for(path), &decision) {
            (None, Err(s)) => assert_eq!(s.code(), Code::Unimplemented, "{path:?}"),
            (None, Ok(_)) => panic!("unknown path {path:?} admitted"),
            (Some(_), Ok(who)) => {
                assert!(valid, "an invalid certificate was admitted to {path:?}");
                assert_eq!(who.is_some(), presented);
            }
            (Some(access), Err(s)) => {
                let allowed = [
                    Code::Unauthenticated,
                    Code::PermissionDenied,
                    Code::ResourceExhausted,
                ];
                assert!(allowed.contains(&s.code()), "{path:?}: {s:?}");
                if !valid {
                    assert_eq!(s.code(), Code::Unauthenticated, "{path:?}: {s:?}");
                }
                if valid && matches!(access, Access::Open) {
                    panic!("{path:?} is open and refused a valid caller: {s:?}");
                }
            }
        }
    }
}

fn paths() -> impl Strategy<Value = String> {
    let known: Vec<Vec<u8>> = TABLE.iter().map(|(p, _)| p.as_bytes().to_vec()).collect();
    prop_oneof![
        fuzzing::text(96),
        fuzzing::mutated_any(known.clone()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        prop::sample::select(known).prop_map(|b| String::from_utf8(b).expect("UTF-8")),
    ]
}

fn certificates() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        2 => fuzzing::bytes(700).prop_map(Some),
        4 => fuzzing::mutated_any(CORPUS.leaves.clone()).prop_map(Some),
        2 => prop::sample::select(CORPUS.leaves.clone()).prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(fuzzing::config(500))]

    #[test]
    fn arbitrary_paths_and_certificates(path in paths(), cert in certificates(), which in 0usize..2) {
        let layer = &layers()[which];
        decide(&layer.0, &path, cert);
    }
}
