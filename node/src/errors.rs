//! One mapping from ldk-node's errors to gRPC status codes, so every Node API call
//! answers a caller's mistake or a missing precondition with a clear code instead of
//! INTERNAL (and never with a panic).

use ldk_node::NodeError;
use tonic::Status;

/// The status for an ldk-node error returned while doing `what`.
pub fn status(what: &str, e: NodeError) -> Status {
    use NodeError::*;
    let msg = format!("{what}: {e}");
    match e {
        InvalidAddress
        | InvalidSocketAddress
        | InvalidPublicKey
        | InvalidSecretKey
        | InvalidNodeId
        | InvalidPaymentId
        | InvalidPaymentHash
        | InvalidPaymentPreimage
        | InvalidPaymentSecret
        | InvalidAmount
        | InvalidInvoice
        | InvalidOffer
        | InvalidRefund
        | InvalidChannelId
        | InvalidNetwork
        | InvalidUri
        | InvalidQuantity
        | InvalidNodeAlias
        | InvalidDateTime
        | InvalidFeeRate
        | InvalidCustomTlvs
        | UnsupportedCurrency
        | UriParameterParsingFailed => Status::invalid_argument(msg),
        InsufficientFunds => Status::failed_precondition(msg),
        DuplicatePayment => Status::already_exists(msg),
        ConnectionFailed => Status::unavailable(msg),
        NotRunning => Status::unavailable(msg),
        PaymentSendingFailed
        | ChannelCreationFailed
        | ChannelClosingFailed
        | ChannelConfigUpdateFailed
        | ChannelSplicingFailed
        | ProbeSendingFailed
        | InvoiceCreationFailed => Status::failed_precondition(msg),
        WalletOperationTimeout
        | TxSyncTimeout
        | GossipUpdateTimeout
        | FeerateEstimationUpdateTimeout => Status::deadline_exceeded(msg),
        _ => Status::internal(msg),
    }
}

impl From<crate::inputs::InputError> for Status {
    fn from(e: crate::inputs::InputError) -> Self {
        use crate::inputs::InputError::*;
        match e {
            OwnInvoice => Status::failed_precondition(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

/// A blocking ldk-node call on tokio's blocking pool; a panic in it becomes INTERNAL
/// instead of taking the process down.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("node call failed: {e}")))
}
