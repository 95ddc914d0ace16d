//! Why a payment failed, in words its owner can act on. ldk-node answers a payment
//! it finds no route for with "Failed to send the given payment." (the reason is in
//! its log only), and a later failure comes as an LDK enum name; the owner needs the
//! reason and, when this node's own channels are what stops the payment, how much
//! they can send (the MAX SEND of `lnswarmctl node channels`).

use ldk_node::{lightning::events::PaymentFailureReason, ChannelDetails};

/// What this node's channels can send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendLimits {
    pub channels: usize,
    pub usable: usize,
    /// Over all usable channels together (a multi-part payment can use them all).
    pub total_msat: u64,
    /// Over the best single usable channel.
    pub largest_msat: u64,
}

impl SendLimits {
    pub fn of(channels: &[ChannelDetails]) -> Self {
        Self::from_limits(
            channels
                .iter()
                .map(|c| (c.is_usable, c.next_outbound_htlc_limit_msat)),
        )
    }

    /// From each channel's (usable, largest payment it can send now).
    pub fn from_limits(channels: impl IntoIterator<Item = (bool, u64)>) -> Self {
        let mut l = SendLimits::default();
        for (usable, limit) in channels {
            l.channels += 1;
            if usable {
                l.usable += 1;
                l.total_msat = l.total_msat.saturating_add(limit);
                l.largest_msat = l.largest_msat.max(limit);
            }
        }
        l
    }
}

/// Why no route was found when sending `amount_msat`.
pub fn no_route(amount_msat: u64, l: &SendLimits) -> String {
    let amount = amount_text(amount_msat);
    if l.channels == 0 {
        return "found no route: this node has no channels (open one with `open-channel`)".into();
    }
    if l.usable == 0 {
        return format!(
            "found no route: none of this node's {} channel(s) is usable now (the peer is \
             offline or the channel not yet confirmed; see `channels`)",
            l.channels
        );
    }
    if let Some(over) = over_limit(amount_msat, l) {
        return format!("found no route: {over}");
    }
    format!(
        "found no route to the payee for {amount}, although this node's channels can send {} \
         ({} over one channel): the path beyond them lacks capacity or the payee is unreachable",
        amount_text(l.total_msat),
        amount_text(l.largest_msat),
    )
}

/// A payment that was tried and failed for `reason`; names this node's limits too
/// when the amount is above them.
pub fn failed(reason: &str, amount_msat: u64, l: &SendLimits) -> String {
    match over_limit(amount_msat, l) {
        Some(over) => format!("{reason}: {over}"),
        None => reason.to_string(),
    }
}

/// Says so when `amount_msat` is more than the usable channels can send together.
fn over_limit(amount_msat: u64, l: &SendLimits) -> Option<String> {
    (l.usable > 0 && amount_msat > l.total_msat).then(|| {
        format!(
            "{} is more than this node can send now: {} over its usable channels, at most {} \
             over one (MAX SEND in `channels`)",
            amount_text(amount_msat),
            amount_text(l.total_msat),
            amount_text(l.largest_msat),
        )
    })
}

/// LDK's reason for a failed payment, in words.
pub fn reason(r: PaymentFailureReason) -> &'static str {
    use PaymentFailureReason::*;
    match r {
        RecipientRejected => {
            "the payee rejected it (a wrong amount, or an invoice it no longer accepts)"
        }
        UserAbandoned => "it was abandoned",
        RetriesExhausted => "every route tried failed and the retries ran out",
        PaymentExpired => "the invoice expired while paying",
        RouteNotFound => "found no route to the payee",
        UnexpectedError => "an unexpected error in route finding",
        UnknownRequiredFeatures => "the invoice requires features this node does not support",
        InvoiceRequestExpired => "the payee sent no invoice in time",
        InvoiceRequestRejected => "the payee rejected the invoice request",
        BlindedPathCreationFailed => "could not build a blinded path back to this node",
    }
}

/// Whole satoshis as "N sat", anything finer as "N msat".
fn amount_text(msat: u64) -> String {
    if msat.is_multiple_of(1000) {
        format!("{} sat", msat / 1000)
    } else {
        format!("{msat} msat")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_channels_and_no_usable_channels_say_so() {
        let none = SendLimits::from_limits([]);
        assert!(no_route(1_000, &none).contains("has no channels"));
        let down = SendLimits::from_limits([(false, 0), (false, 5_000)]);
        let e = no_route(1_000, &down);
        assert!(
            e.contains("none of this node's 2 channel(s) is usable"),
            "{e}"
        );
    }

    #[test]
    fn an_amount_above_the_channels_names_their_limit() {
        let l = SendLimits::from_limits([(true, 20_000_000), (true, 5_000_000), (false, 9)]);
        assert_eq!(l.total_msat, 25_000_000);
        assert_eq!(l.largest_msat, 20_000_000);
        let e = no_route(50_000_000, &l);
        assert!(
            e.contains("50000 sat is more than this node can send now: 25000 sat"),
            "{e}"
        );
        assert!(e.contains("at most 20000 sat over one"), "{e}");
        let e = failed(
            reason(PaymentFailureReason::RetriesExhausted),
            50_000_000,
            &l,
        );
        assert!(e.starts_with("every route tried failed"), "{e}");
        assert!(e.contains("more than this node can send"), "{e}");
    }

    #[test]
    fn an_amount_within_the_channels_blames_the_path() {
        let l = SendLimits::from_limits([(true, 20_000_000)]);
        let e = no_route(1_500, &l);
        assert!(e.contains("for 1500 msat"), "{e}");
        assert!(e.contains("the path beyond them lacks capacity"), "{e}");
        let e = failed(reason(PaymentFailureReason::RecipientRejected), 1_500, &l);
        assert!(!e.contains("more than"), "{e}");
    }
}
