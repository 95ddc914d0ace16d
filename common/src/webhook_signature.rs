//! How an outgoing webhook's POST is signed, so that the receiver knows it came from
//! the cluster and was not changed: Greenlight's scheme (HMAC-SHA256 of the raw
//! body, keyed with the webhook's secret, base64), in lnswarm's own header. The
//! managers sign with it; receivers and the client library check with it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "lnswarm-signature";

/// A new webhook secret: 32 random bytes, base64url. The HMAC key is the secret's
/// text as shown (its UTF-8 bytes), so a receiver can use it as given.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac
}

/// The signature header's value for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(secret, body).finalize().into_bytes())
}

/// Whether `signature` (the header's value) signs `body` with `secret`, compared in
/// constant time.
pub fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(secret, body).verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_only_with_its_secret_and_body() {
        let secret = new_secret();
        let body = br#"{"event_id":"e1"}"#;
        let sig = sign(&secret, body);
        assert!(verify(&secret, body, &sig));
        assert!(!verify(&new_secret(), body, &sig));
        assert!(!verify(&secret, br#"{"event_id":"e2"}"#, &sig));
        assert!(!verify(&secret, body, "not base64!"));
    }

    #[test]
    fn the_scheme_is_hmac_sha256_in_base64() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }
}
