//! Fuzzes what reads certificates and CSRs that arrive from the network or the
//! disk: the CA's CSR decoding ([`ClusterCa::issue`], [`csr_requested_ous`]), the
//! verifier every mTLS call goes through ([`PeerVerifier::verify`]), the unverified
//! readers ([`subject_of`], [`validity_of`], [`ip_sans_of`], [`not_after_unix`]),
//! loading a stored CA ([`ClusterCa::load`]) and the joiner's address
//! ([`ip_of_address`]). Inputs are arbitrary bytes and mutations of valid
//! certificates and CSRs, both as DER and re-wrapped as PEM (so the mutation
//! reaches the DER parser). Each must give a value or a `PkiError`, never a panic,
//! and a mutated certificate must never verify as anyone.

use std::sync::LazyLock;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use proptest::prelude::*;

use super::*;
use crate::fuzzing;

pub(crate) const CLUSTER: &str = "fuzz-cluster";

/// Valid inputs to mutate (the authorization layer's fuzz tests use them too).
pub(crate) struct Corpus {
    pub ca: ClusterCa,
    pub verifier: PeerVerifier,
    pub csr_pem: String,
    pub csr_der: Vec<u8>,
    /// Leaf certificates the CA issued: a worker, a manager, an owner of
    /// [`NODE`], and the node [`NODE`].
    pub leaves: Vec<Vec<u8>>,
}

/// The node id the owner and node leaves name.
pub(crate) static NODE: LazyLock<String> = LazyLock::new(|| "02".to_string() + &"11".repeat(32));

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn der_of(pem_text: &str) -> Vec<u8> {
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    B64.decode(body).expect("valid PEM")
}

pub(crate) static CORPUS: LazyLock<Corpus> = LazyLock::new(|| {
    let ca = ClusterCa::create(CLUSTER).unwrap();
    let verifier = PeerVerifier::new(ca.cert_pem(), CLUSTER).unwrap();
    let kc = new_key_and_csr("fuzz", Some(Role::Worker)).unwrap();
    let node = NODE.clone();
    let mut leaves = Vec::new();
    for (role, cn) in [
        (Role::Worker, "agent-1".to_string()),
        (Role::Manager, "manager-1".to_string()),
        (Role::User, format!("{node}/phone")),
        (Role::Node, node.clone()),
    ] {
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let issued = ca
            .issue(&LeafRequest {
                csr_pem: &kc.csr_pem,
                role,
                common_name: &cn,
                ip_sans: &[ip],
                validity: None,
            })
            .unwrap();
        leaves.push(issued.der);
    }
    Corpus {
        csr_der: der_of(&kc.csr_pem),
        csr_pem: kc.csr_pem,
        ca,
        verifier,
        leaves,
    }
});

/// Every reader of a certificate, on `der` and its PEM.
fn read_certificate(der: &[u8]) {
    let c = &*CORPUS;
    let verified = c.verifier.verify(der);
    if let Ok(who) = &verified {
        // Only the CA's own leaves verify: a change to one breaks its signature.
        assert!(
            c.leaves.iter().any(|l| l == der),
            "a certificate the CA never issued verified as {who:?}"
        );
    }
    let _ = validity_of_der(der);
    let _ = ip_sans_of(der);
    let _ = not_after_unix(der);
    let text = pem("CERTIFICATE", der);
    let _ = subject_of(&text);
    let _ = validity_of(&text);
    let _ = PeerVerifier::new(&text, CLUSTER);
    let _ = ClusterCa::load(CLUSTER, &text, &c.ca.key_pem());
}

/// The CA's readers of a CSR, on `pem_text`. Issuing only ever takes the CSR's key:
/// what is issued verifies as the identity the CA chose, whatever the CSR said.
fn read_csr(pem_text: &str) {
    let c = &*CORPUS;
    let _ = csr_requested_ous(pem_text);
    let issued = c.ca.issue(&LeafRequest {
        csr_pem: pem_text,
        role: Role::Worker,
        common_name: "agent-fuzz",
        ip_sans: &[],
        validity: None,
    });
    if let Ok(cert) = issued {
        let who = c
            .verifier
            .verify(&cert.der)
            .expect("an issued certificate verifies");
        assert_eq!((who.role, who.id.as_str()), (Role::Worker, "agent-fuzz"));
    }
}

proptest! {
    #![proptest_config(fuzzing::config(300))]

    #[test]
    fn arbitrary_certificate_bytes(der in fuzzing::bytes(1024)) {
        read_certificate(&der);
    }

    #[test]
    fn mutated_certificates(der in fuzzing::mutated_any(CORPUS.leaves.clone())) {
        read_certificate(&der);
    }

    #[test]
    fn mutated_ca_certificates(der in fuzzing::mutated(CORPUS.ca.cert_der().to_vec())) {
        read_certificate(&der);
    }

    #[test]
    fn mutated_certificate_pem_text(text in fuzzing::mutated_text(pem("CERTIFICATE", &CORPUS.leaves[0]))) {
        let _ = subject_of(&text);
        let _ = validity_of(&text);
        let _ = PeerVerifier::new(&text, CLUSTER);
    }

    #[test]
    fn arbitrary_csr_text(text in fuzzing::text(600)) {
        read_csr(&text);
    }

    #[test]
    fn arbitrary_csr_der(der in fuzzing::bytes(600)) {
        read_csr(&pem("CERTIFICATE REQUEST", &der));
    }

    #[test]
    fn mutated_csr_der(der in fuzzing::mutated(CORPUS.csr_der.clone())) {
        read_csr(&pem("CERTIFICATE REQUEST", &der));
    }

    #[test]
    fn mutated_csr_pem_text(text in fuzzing::mutated_text(CORPUS.csr_pem.clone())) {
        read_csr(&text);
    }

    #[test]
    fn stored_ca_key_text(text in fuzzing::mutated_text(CORPUS.ca.key_pem())) {
        let _ = ClusterCa::load(CLUSTER, CORPUS.ca.cert_pem(), &text);
    }

    #[test]
    fn joiner_addresses(addr in prop_oneof![
        fuzzing::text(64),
        fuzzing::mutated_text("[::1]:4242".into()),
        fuzzing::mutated_text("10.0.0.7:4242".into()),
    ]) {
        let _ = ip_of_address(&addr);
    }
}

#[test]
fn the_corpus_is_valid() {
    let c = &*CORPUS;
    for leaf in &c.leaves {
        c.verifier.verify(leaf).unwrap();
    }
    assert_eq!(csr_requested_ous(&c.csr_pem).unwrap(), ["swarm-worker"]);
    assert_eq!(der_of(&pem("X", &c.csr_der)), c.csr_der);
}

/// Crash found by `mutated_certificates`: a worker certificate the CA issued with
/// one byte appended verified as that worker (x509-parser leaves trailing bytes
/// unread). It must be refused as malformed.
#[test]
fn regression_bytes_after_a_certificate_are_refused() {
    let mut der = CORPUS.leaves[0].clone();
    der.push(0);
    assert!(matches!(
        CORPUS.verifier.verify(&der),
        Err(PkiError::MalformedCertificate(m)) if m.contains("after the certificate")
    ));
}

/// DER length octets for `n`, padded with `extra` leading zero octets (so
/// `extra > 0` is a non-minimal encoding the CA never writes).
fn length_octets(n: usize, extra: usize) -> Vec<u8> {
    if n < 0x80 && extra == 0 {
        return vec![n as u8];
    }
    let digits: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|d| *d == 0)
        .collect();
    let mut out = vec![0x80 | (digits.len() + extra) as u8];
    out.extend(std::iter::repeat_n(0, extra));
    out.extend(digits);
    out
}

/// `tag`, `content` framed with `extra` padding octets in its length.
fn framed(tag: u8, content: &[u8], extra: usize) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length_octets(content.len(), extra));
    out.extend_from_slice(content);
    out
}

/// The (tag, content) elements of a DER SEQUENCE's content (minimal lengths, as
/// the CA writes them).
fn elements(mut content: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let tag = content[0];
        let (len, header) = match content[1] {
            l if l < 0x80 => (l as usize, 2),
            l => {
                let n = (l & 0x7f) as usize;
                let len = content[2..2 + n]
                    .iter()
                    .fold(0usize, |a, d| (a << 8) | *d as usize);
                (len, 2 + n)
            }
        };
        out.push((tag, content[header..header + len].to_vec()));
        content = &content[header + len..];
    }
    out
}

/// A leaf's outer SEQUENCE split into TBSCertificate, algorithm and signature.
fn envelope_parts(der: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let outer = elements(der);
    assert_eq!(outer.len(), 1);
    let parts = elements(&outer[0].1);
    assert_eq!(parts.len(), 3);
    parts
}

/// How to re-frame an issued certificate: padding octets for the lengths of the
/// outer SEQUENCE, the algorithm and the signature, and bytes after the signature.
#[derive(Debug, Clone)]
struct Reframe {
    leaf: usize,
    outer: usize,
    alg: usize,
    sig: usize,
    trailing: Vec<u8>,
    alg_extra: Vec<u8>,
}

fn reframe(r: &Reframe) -> Vec<u8> {
    let parts = envelope_parts(&CORPUS.leaves[r.leaf % CORPUS.leaves.len()]);
    let mut alg_content = parts[1].1.clone();
    alg_content.extend_from_slice(&r.alg_extra);
    let mut content = framed(parts[0].0, &parts[0].1, 0);
    content.extend(framed(parts[1].0, &alg_content, r.alg));
    content.extend(framed(parts[2].0, &parts[2].1, r.sig));
    content.extend_from_slice(&r.trailing);
    framed(0x30, &content, r.outer)
}

proptest! {
    #![proptest_config(fuzzing::config(300))]

    /// The envelope the CA does not sign, re-encoded: only the CA's own encoding
    /// verifies (checked in read_certificate).
    #[test]
    fn reframed_certificates(
        leaf in any::<usize>(),
        outer in 0usize..3,
        alg in 0usize..3,
        sig in 0usize..3,
        trailing in prop_oneof![Just(vec![]), fuzzing::bytes(8), Just(vec![5, 0])],
        alg_extra in prop_oneof![Just(vec![]), Just(vec![5, 0]), fuzzing::bytes(4)],
    ) {
        let der = reframe(&Reframe { leaf, outer, alg, sig, trailing, alg_extra });
        read_certificate(&der);
    }
}

fn refused_as_reencoded(der: &[u8]) -> bool {
    matches!(
        CORPUS.verifier.verify(der),
        Err(PkiError::MalformedCertificate(m)) if m.contains("not the DER encoding the CA issues")
    )
}

#[test]
fn the_reframed_corpus_is_the_corpus() {
    for leaf in 0..CORPUS.leaves.len() {
        let r = Reframe {
            leaf,
            outer: 0,
            alg: 0,
            sig: 0,
            trailing: vec![],
            alg_extra: vec![],
        };
        assert_eq!(reframe(&r), CORPUS.leaves[leaf]);
    }
}

/// Found on main before the envelope check (pki/envelope.rs): an issued worker
/// certificate with a NULL element added after its signature, inside the outer
/// SEQUENCE, verified as that worker (x509-parser ignores what follows the
/// signature).
#[test]
fn regression_bytes_after_the_signature_inside_the_certificate_are_refused() {
    let der = reframe(&Reframe {
        leaf: 0,
        outer: 0,
        alg: 0,
        sig: 0,
        trailing: vec![5, 0],
        alg_extra: vec![],
    });
    assert!(refused_as_reencoded(&der));
}

/// Found on main before the envelope check: the outer SEQUENCE's length written
/// with a leading zero octet (BER, not DER) verified.
#[test]
fn regression_a_non_minimal_outer_length_is_refused() {
    let der = reframe(&Reframe {
        leaf: 0,
        outer: 1,
        alg: 0,
        sig: 0,
        trailing: vec![],
        alg_extra: vec![],
    });
    assert!(refused_as_reencoded(&der));
}

/// Found on main before the envelope check: a non-minimal length on the
/// signature's BIT STRING verified.
#[test]
fn regression_a_non_minimal_signature_length_is_refused() {
    let der = reframe(&Reframe {
        leaf: 0,
        outer: 0,
        alg: 0,
        sig: 1,
        trailing: vec![],
        alg_extra: vec![],
    });
    assert!(refused_as_reencoded(&der));
}

/// Found on main before the envelope check: the unsigned outer algorithm given
/// NULL parameters (the signed one has none) verified.
#[test]
fn regression_an_outer_algorithm_unlike_the_signed_one_is_refused() {
    let der = reframe(&Reframe {
        leaf: 0,
        outer: 0,
        alg: 0,
        sig: 0,
        trailing: vec![],
        alg_extra: vec![5, 0],
    });
    assert!(refused_as_reencoded(&der));
}
