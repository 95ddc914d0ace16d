//! Payments the channel can carry (issue 17): on a 200 000 sat channel between two
//! hosted nodes the opener pays the acceptor 50 000 sat (with LDK's default the
//! acceptor took at most 10 % of the channel in flight, and that payment found no
//! route); `lnswarmctl node channels` shows each end's real per-payment limits; and
//! a payment above what the channel can send says why.

use std::time::Duration;

use lnswarm_tests::{hosting::HostingCluster, wait};

const CHANNEL_SATS: u64 = 200_000;

/// A limit field of a channel as `channels --format json` shows it.
fn msat(ch: &serde_json::Value, field: &str) -> u64 {
    ch[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {ch}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_opener_pays_a_quarter_of_the_channel_and_sees_its_limits() {
    let tmp = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("LNSWARM_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap();
    let c = HostingCluster::start(tmp.path(), 2).await;
    let alice = c.host("alice").owner;
    let bob = c.host("bob").owner;
    let channel_id = c.open_funded_channel(&alice, &bob, CHANNEL_SATS).await;
    let a = c.channel_json(&alice, &channel_id);
    let point = a["funding_txo"]
        .as_str()
        .expect("channel point")
        .to_string();

    // Before any payment alice holds the whole channel, and the limit is the whole
    // channel less the reserve and commitment fees: not 10 % of it.
    let whole = CHANNEL_SATS * 1000;
    let send = msat(&a, "max_send_msat");
    assert!(
        send > whole * 9 / 10 && send < whole,
        "alice can send nearly the whole channel in one payment: {a}"
    );
    let b = c.channel_json(&bob, &point);
    let receive = msat(&b, "max_receive_msat");
    assert!(
        receive > whole * 9 / 10 && receive < whole,
        "bob accepts nearly the whole channel in one payment: {b}"
    );
    assert_eq!(msat(&b, "max_send_msat"), 0, "bob holds nothing yet: {b}");

    // The payment that failed with LDK's default 10 %.
    c.pay(&alice, &bob, 50_000_000);
    // Pay returns when the preimage is back; the HTLC leaves both commitments a
    // round trip later, and only then do the limits show the new balances.
    let (a, b) = wait::until("the payment to settle", Duration::from_secs(30), || async {
        let a = c.channel_json(&alice, &channel_id);
        let b = c.channel_json(&bob, &point);
        (msat(&b, "max_send_msat") > 0 && msat(&a, "max_send_msat") <= send - 50_000_000)
            .then_some((a, b))
    })
    .await;
    let send_after = msat(&a, "max_send_msat");
    assert!(
        send_after <= send - 50_000_000,
        "alice's limit fell by the payment: {a}"
    );
    assert!(
        msat(&b, "max_send_msat") > 0 && msat(&b, "max_send_msat") < 50_000_000,
        "bob can send back what he received less his reserve: {b}"
    );

    // More than alice can send now: refused, saying why.
    // Well over it: the limit moves by a few sat as commitment fees are updated,
    // and a payment 1 sat over one reading once went through.
    let too_much = (send_after / 1000 + 5_000) * 1000;
    let (ok, invoice, err) = c.owner_ctl(
        &bob,
        &["invoice", &too_much.to_string(), "--description", "x"],
    );
    assert!(ok, "invoice: {err}");
    let (ok, out, err) = c.owner_ctl(&alice, &["pay", invoice.trim()]);
    assert!(!ok, "a payment above the channel's limit is refused: {out}");
    assert!(
        err.contains(&format!(
            "payment failed: found no route: {} sat is more than this node can send now",
            too_much / 1000
        )),
        "{err}"
    );
    assert!(err.contains("MAX SEND"), "{err}");
}
