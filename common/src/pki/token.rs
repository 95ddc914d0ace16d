//! Join tokens in SwarmKit's shape: `LNSTKN-1-<root CA digest>-<secret>`. The digest
//! lets a joiner pin the CA before it trusts anything; the secret proves the joiner
//! was invited, and is compared in constant time.

use std::fmt;

use rand::RngCore;
use subtle::ConstantTimeEq;

use super::PkiError;

const PREFIX: &str = "LNSTKN";
const VERSION: &str = "1";

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the root CA certificate's DER.
    pub ca_digest: String,
    secret: String,
}

impl JoinToken {
    /// A new token for the CA with this digest, with a fresh 160-bit secret.
    pub fn generate(ca_digest: &str) -> Self {
        let mut secret = [0u8; 20];
        rand::thread_rng().fill_bytes(&mut secret);
        JoinToken {
            ca_digest: ca_digest.to_string(),
            secret: hex::encode(secret),
        }
    }

    pub fn parse(s: &str) -> Result<Self, PkiError> {
        let mut parts = s.trim().splitn(4, '-');
        let (Some(PREFIX), Some(VERSION), Some(digest), Some(secret)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PkiError::MalformedToken);
        };
        let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if digest.len() != 64 || !is_hex(digest) || secret.len() != 40 || !is_hex(secret) {
            return Err(PkiError::MalformedToken);
        }
        Ok(JoinToken {
            ca_digest: digest.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    /// Constant-time comparison of the whole token, so a caller learns nothing from
    /// timing about how much of a guess was right.
    pub fn matches(&self, presented: &JoinToken) -> bool {
        let a = self.to_string();
        let b = presented.to_string();
        a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.ca_digest, self.secret)
    }
}

/// Never prints the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken({PREFIX}-{VERSION}-{}-<redacted>)",
            self.ca_digest
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let t = JoinToken::generate(&"ab".repeat(32));
        let parsed = JoinToken::parse(&t.to_string()).unwrap();
        assert!(t.matches(&parsed));
        assert!(!t.matches(&JoinToken::generate(&"ab".repeat(32))));
        for bad in ["", "LNSTKN-1-xyz-abc", "SWMTKN-1-a-b", &t.to_string()[..70]] {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{t:?}").contains(&t.secret));
    }
}

#[cfg(test)]
#[path = "token_fuzz.rs"]
mod fuzz;
