//! The roles a certificate's OU can name.

use std::{fmt, str::FromStr};

use super::PkiError;

/// Who a caller is, as its certificate's OU says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Role {
    /// A member of the manager quorum.
    Manager,
    /// An agent on a worker host.
    Worker,
    /// A person running `lnswarmctl` against the Control API.
    Operator,
    /// A node owner's device; its CN is `<node id>/<device>`.
    User,
    /// A hosted node's server certificate.
    Node,
    /// An application that registers nodes for its users (Greenlight's partner
    /// certificates), issued by an operator.
    App,
    /// A node owner's read-only device (paired with `read_only`): CN as `User`, but
    /// it reaches only the RPCs that read. Its own OU, so a verifier that does not
    /// know it refuses it instead of granting it an owner's rights.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Manager,
        Role::Worker,
        Role::Operator,
        Role::User,
        Role::Node,
        Role::App,
        Role::Viewer,
    ];

    /// The OU string, as SwarmKit spells its roles.
    pub fn ou(self) -> &'static str {
        match self {
            Role::Manager => "swarm-manager",
            Role::Worker => "swarm-worker",
            Role::Operator => "lnswarm-operator",
            Role::User => "lightning-user",
            Role::Node => "lightning-node",
            Role::App => "lnswarm-app",
            Role::Viewer => "lightning-viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ou())
    }
}

impl FromStr for Role {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.ou() == s)
            .ok_or_else(|| PkiError::UnknownRole(s.to_string()))
    }
}
