//! Domain errors as gRPC codes, in one place, used only by the gRPC handlers. The
//! store, the cluster object, raft membership and the dispatcher's sessions return
//! their own error types; a handler's `?` turns them into a `Status` through these.
//! Errors of one service's helpers convert in that service's module instead.

use tonic::{metadata::MetadataValue, Status};

use crate::{
    ca::rotation::RotationError,
    cluster::ClusterError,
    dispatcher::sessions::{EndReason, SessionError},
    orchestrator::upgrades::UpgradeError,
    store::{raft::membership::MembershipError, StoreError},
};

/// Metadata key on an UNAVAILABLE that says the cluster itself is not answering for
/// now (no leader, no quorum, this manager not caught up): worth retrying, unlike an
/// UNAVAILABLE that is a verdict ("the node cannot run now").
pub const TRANSIENT: &str = "lnswarm-transient";

/// Marks `status` as [`TRANSIENT`].
pub fn transient(mut status: Status) -> Status {
    status
        .metadata_mut()
        .insert(TRANSIENT, MetadataValue::from_static("1"));
    status
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => transient(Status::unavailable(m)),
            StoreError::Contended(_) => Status::aborted(e.to_string()),
            other => Status::internal(other.to_string()),
        }
    }
}

impl From<ClusterError> for Status {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Store(e) => e.into(),
            ClusterError::NotInitialized => Status::failed_precondition(e.to_string()),
            ClusterError::InvalidSetting(e) => Status::invalid_argument(e.to_string()),
            ClusterError::NoDataKey => Status::unavailable(e.to_string()),
            ClusterError::AutolockOff => Status::failed_precondition(e.to_string()),
            other => Status::internal(other.to_string()),
        }
    }
}

impl From<UpgradeError> for Status {
    fn from(e: UpgradeError) -> Self {
        match e {
            UpgradeError::Store(e) => e.into(),
            UpgradeError::Cluster(e) => e.into(),
            UpgradeError::UnknownNode(_) => Status::not_found(e.to_string()),
            UpgradeError::InvalidShare(_) => Status::invalid_argument(e.to_string()),
        }
    }
}

impl From<RotationError> for Status {
    fn from(e: RotationError) -> Self {
        match e {
            RotationError::InProgress => Status::failed_precondition(e.to_string()),
            RotationError::BadRoot(_) | RotationError::HalfRoot => {
                Status::invalid_argument(e.to_string())
            }
            RotationError::Cluster(e) => e.into(),
            RotationError::Store(e) => e.into(),
        }
    }
}

impl From<MembershipError> for Status {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::NotFound(_) => Status::not_found(e.to_string()),
            MembershipError::Store(e) => e.into(),
            other => Status::failed_precondition(other.to_string()),
        }
    }
}

impl From<SessionError> for Status {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Unknown => Status::not_found(e.to_string()),
            SessionError::RateLimited => Status::unavailable(e.to_string()),
        }
    }
}

/// The status a session's streams end with.
impl From<&EndReason> for Status {
    fn from(reason: &EndReason) -> Self {
        match reason {
            EndReason::Replaced => Status::aborted("session replaced by a newer session"),
            EndReason::Expired => Status::not_found("session expired; open a new one"),
            EndReason::LostLeadership => {
                Status::unavailable("this manager is no longer the leader")
            }
            EndReason::Removed => Status::permission_denied("this agent was removed"),
            EndReason::Left => Status::cancelled("the agent closed its session"),
        }
    }
}
