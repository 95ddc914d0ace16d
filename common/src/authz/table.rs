//! The authorization table: every RPC of every service, and who may call it.
//!
//! A test walks the descriptor set and fails if an RPC is missing here.

use std::{collections::HashMap, sync::LazyLock};

use crate::pki::Role;

/// Who an RPC admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a certificate (a presented certificate must still be
    /// valid). Only: fetching the root CA, issuing a certificate with a join token,
    /// GetChallenge, Register, Recover, and gRPC health.
    Open,
    /// Anyone, as `Open`, within the per-address and global rate limits of the
    /// server (when it sets them): the calls that make an owner or pair a device,
    /// and Unlock.
    Anonymous,
    /// Callers holding a certificate with one of these roles.
    Roles(&'static [Role]),
    /// A node owner's device (`lightning-user`) acting on its own node. On the Node
    /// API the layer checks the certificate's node id against the node it serves; on
    /// the Scheduler API the handler checks it against the request's node id with
    /// [`super::require_owner`] before doing anything.
    Owner,
    /// As `Owner`, and also the owner's read-only devices (`lightning-viewer`).
    OwnerRead,
}

use Access::*;
use Role::*;

const AGENTS: &[Role] = &[Worker, Manager];
const MANAGERS: &[Role] = &[Manager];
const OPERATORS: &[Role] = &[Operator, Manager];
const ANY_CERT: &[Role] = &[Manager, Worker, Operator, User, Node, App, Viewer];

/// RPC path → access. Sorted by service as the protos list them.
pub static TABLE: &[(&str, Access)] = &[
    // CA: joiners have no certificate yet.
    ("/lnswarm.v1.CA/GetRootCACertificate", Open),
    ("/lnswarm.v1.CA/IssueNodeCertificate", Open),
    ("/lnswarm.v1.CA/NodeCertificateStatus", Roles(ANY_CERT)),
    // Dispatcher: agents only.
    ("/lnswarm.v1.Dispatcher/Session", Roles(AGENTS)),
    ("/lnswarm.v1.Dispatcher/Heartbeat", Roles(AGENTS)),
    ("/lnswarm.v1.Dispatcher/UpdateTaskStatus", Roles(AGENTS)),
    ("/lnswarm.v1.Dispatcher/Assignments", Roles(AGENTS)),
    // Raft: manager to manager.
    ("/lnswarm.v1.Raft/ProcessRaftMessage", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/StreamRaftSnapshot", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/Join", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/Leave", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/ResolveAddress", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/ForwardProposal", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/ReadIndex", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/GetStatus", Roles(MANAGERS)),
    ("/lnswarm.v1.Raft/GetDataKey", Roles(MANAGERS)),
    // Control: operators.
    ("/lnswarm.v1.Control/GetClusterInfo", Roles(OPERATORS)),
    (
        "/lnswarm.v1.Control/UpdateClusterSettings",
        Roles(OPERATORS),
    ),
    ("/lnswarm.v1.Control/GetJoinToken", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/GetUnlockKey", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/IssueAppCertificate", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/GetRootCAStatus", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/RotateRootCA", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/ListManagers", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/RemoveManager", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/ListAgents", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/GetAgent", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/UpdateAgent", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/RemoveAgent", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/ListTasks", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/GetTask", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/CreateTask", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/RemoveTask", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/ListHostedNodes", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/InspectHostedNode", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/RemoveHostedNode", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/MoveHostedNode", Roles(OPERATORS)),
    ("/lnswarm.v1.Control/UpgradeHostedNodes", Roles(OPERATORS)),
    // Scheduler: owners, except the three calls that make an owner.
    ("/lnswarm.v1.Scheduler/GetChallenge", Anonymous),
    ("/lnswarm.v1.Scheduler/Register", Anonymous),
    ("/lnswarm.v1.Scheduler/Recover", Anonymous),
    ("/lnswarm.v1.Scheduler/RenewDeviceCertificate", OwnerRead),
    ("/lnswarm.v1.Scheduler/Schedule", OwnerRead),
    ("/lnswarm.v1.Scheduler/GetNodeInfo", OwnerRead),
    ("/lnswarm.v1.Scheduler/MaybeUpgrade", Owner),
    ("/lnswarm.v1.Scheduler/ListInviteCodes", Owner),
    ("/lnswarm.v1.Scheduler/ExportNode", Owner),
    ("/lnswarm.v1.Scheduler/DownloadExport", Owner),
    ("/lnswarm.v1.Scheduler/AddOutgoingWebhook", Owner),
    ("/lnswarm.v1.Scheduler/ListOutgoingWebhooks", Owner),
    ("/lnswarm.v1.Scheduler/DeleteWebhooks", Owner),
    ("/lnswarm.v1.Scheduler/RotateOutgoingWebhookSecret", Owner),
    ("/lnswarm.v1.Scheduler/SignerRequestsStream", Owner),
    ("/lnswarm.v1.Scheduler/PairDevice", Anonymous),
    ("/lnswarm.v1.Scheduler/GetPairing", Anonymous),
    ("/lnswarm.v1.Scheduler/ListPairings", Owner),
    // Node: the owner of the node being served.
    ("/lnswarm.v1.Node/GetInfo", OwnerRead),
    ("/lnswarm.v1.Node/NewAddress", Owner),
    ("/lnswarm.v1.Node/Balances", OwnerRead),
    ("/lnswarm.v1.Node/ConnectPeer", Owner),
    ("/lnswarm.v1.Node/ListPeers", OwnerRead),
    ("/lnswarm.v1.Node/DisconnectPeer", Owner),
    ("/lnswarm.v1.Node/OpenChannel", Owner),
    ("/lnswarm.v1.Node/ListChannels", OwnerRead),
    ("/lnswarm.v1.Node/CloseChannel", Owner),
    ("/lnswarm.v1.Node/CreateInvoice", Owner),
    ("/lnswarm.v1.Node/Pay", Owner),
    ("/lnswarm.v1.Node/ListPayments", OwnerRead),
    ("/lnswarm.v1.Node/SubscribeEvents", OwnerRead),
    // NodeState: a hosted node, for its own keys (the handler checks the CN
    // against the request's node id).
    ("/lnswarm.v1.NodeState/Load", Roles(&[Node])),
    ("/lnswarm.v1.NodeState/Write", Roles(&[Node])),
    ("/lnswarm.v1.NodeState/PeerAddresses", Roles(&[Node])),
    ("/lnswarm.v1.NodeState/RecordEvents", Roles(&[Node])),
    ("/lnswarm.v1.NodeState/ReportIdle", Roles(&[Node])),
    // A locked manager: whoever holds the unlock key.
    ("/lnswarm.v1.Unlock/Unlock", Anonymous),
    // Standard services every server carries.
    ("/grpc.health.v1.Health/Check", Open),
    ("/grpc.health.v1.Health/Watch", Open),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Roles(ANY_CERT),
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Roles(ANY_CERT),
    ),
];

/// The access rule for an RPC path, or `None` for a path not in the table (refused).
/// Asked on every call, so the table is indexed once.
pub fn access_for(path: &str) -> Option<Access> {
    static INDEX: LazyLock<HashMap<&str, Access>> =
        LazyLock::new(|| TABLE.iter().copied().collect());
    INDEX.get(path).copied()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_rpc_in_the_protos_is_in_the_table_and_nothing_else() {
        let defined: BTreeSet<String> = crate::api::all_method_paths().into_iter().collect();
        let listed: BTreeSet<String> = TABLE
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("/lnswarm."))
            .collect();
        let missing: Vec<_> = defined.difference(&listed).collect();
        let stale: Vec<_> = listed.difference(&defined).collect();
        assert!(
            missing.is_empty(),
            "RPCs missing from the authorization table: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "table entries for RPCs that do not exist: {stale:?}"
        );
        assert_eq!(
            listed.len(),
            TABLE
                .iter()
                .filter(|(p, _)| p.starts_with("/lnswarm."))
                .count(),
            "duplicate entries"
        );
    }
}
