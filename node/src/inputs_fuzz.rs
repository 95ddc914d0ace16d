//! Fuzzes the Node API's input checks ([`super`]): node ids, peer addresses,
//! channel ids, BOLT11 invoices (as text, and with their data changed under a
//! valid checksum so the invoice decoder and the checks after it are reached) and
//! amounts. Whatever an owner sends gives a value the node can use or an
//! [`InputError`] whose message stays short, never a panic.

use std::time::Duration;

use ldk_node::{
    bitcoin::{
        hashes::{sha256, Hash},
        secp256k1::{PublicKey, Secp256k1, SecretKey},
        Network,
    },
    lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret},
};
use lnswarm_common::fuzzing;
use proptest::prelude::*;

use super::*;

/// The longest message an error may carry: it travels in a gRPC header.
const MAX_MESSAGE: usize = 400;

fn key(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).expect("a valid key")
}

fn public(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &key(n))
}

/// An invoice signed by key 1, for `currency`, of `amount_msat` if given.
fn invoice(currency: Currency, amount_msat: Option<u64>) -> String {
    let builder = InvoiceBuilder::new(currency)
        .description("coffee".into())
        .payment_hash(sha256::Hash::hash(b"preimage"))
        .payment_secret(PaymentSecret([7; 32]))
        .current_timestamp()
        .expiry_time(Duration::from_secs(3600))
        .min_final_cltv_expiry_delta(144);
    let builder = match amount_msat {
        Some(a) => builder.amount_milli_satoshis(a),
        None => builder,
    };
    builder
        .build_signed(|hash| Secp256k1::new().sign_ecdsa_recoverable(hash, &key(1)))
        .expect("a valid invoice")
        .to_string()
}

fn invoices() -> Vec<String> {
    vec![
        invoice(Currency::Regtest, Some(50_000)),
        invoice(Currency::Regtest, None),
        invoice(Currency::Bitcoin, Some(1)),
    ]
}

fn short(e: &InputError) {
    let m = e.to_string();
    assert!(m.len() <= MAX_MESSAGE, "{} bytes: {m:.200}", m.len());
}

fn check_node_id(s: &str) {
    match node_id(s) {
        Ok(k) => assert_eq!(node_id(&k.to_string()), Ok(k)),
        Err(e) => short(&e),
    }
}

fn check_address(s: &str) {
    match optional_address(s) {
        // Printed, it parses to an address that prints the same (LDK reads some
        // IP addresses as host names, which resolve to the same).
        Ok(Some(a)) => assert_eq!(
            address(&a.to_string()).map(|b| b.to_string()),
            Ok(a.to_string())
        ),
        Ok(None) => assert!(s.trim().is_empty()),
        Err(e) => short(&e),
    }
}

fn check_channel_id(s: &str) {
    match channel_id(s) {
        Ok(id) => assert_eq!(channel_id(&id.0.to_string()), Ok(id)),
        Err(e) => short(&e),
    }
}

/// Pay's checks on a regtest node whose own key is `own`.
fn check_payment(s: &str, amount_msat: u64, own: u8) {
    match payment(s, amount_msat, Network::Regtest, &public(own)) {
        Ok((invoice, amount)) => {
            assert_eq!(invoice.network(), Network::Regtest);
            assert!(amount > 0 && amount <= MAX_MSAT, "{amount}");
            match invoice.amount_milli_satoshis() {
                Some(named) => assert_eq!((named, amount_msat), (amount, 0)),
                None => assert_eq!(amount, amount_msat),
            }
            assert!(!invoice.is_expired());
            assert_ne!(invoice.recover_payee_pub_key(), public(own));
        }
        Err(e) => short(&e),
    }
}

/// BOLT11's bech32 alphabet and checksum (BIP 173), to change an invoice's data
/// and still give it a valid checksum.
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk = 1u32;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// `hrp` and 5-bit `data` as bech32 text with its checksum.
fn bech32(hrp: &str, data: &[u8]) -> String {
    let mut values: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| b & 31));
    values.extend_from_slice(data);
    values.extend([0; 6]);
    let chk = polymod(&values) ^ 1;
    let checksum = (0..6).map(|i| ((chk >> (5 * (5 - i))) & 31) as u8);
    let mut s = format!("{hrp}1");
    s.extend(
        data.iter()
            .copied()
            .chain(checksum)
            .map(|v| CHARSET[v as usize] as char),
    );
    s
}

/// `text`'s human-readable part and data (without the checksum).
fn split_bech32(text: &str) -> (String, Vec<u8>) {
    let (hrp, rest) = text.rsplit_once('1').expect("bech32");
    let data = rest.as_bytes()[..rest.len() - 6]
        .iter()
        .map(|c| {
            CHARSET
                .iter()
                .position(|x| x == c)
                .expect("bech32 character") as u8
        })
        .collect();
    (hrp.to_string(), data)
}

/// A valid invoice with its data (or its human-readable part) changed, under a
/// valid checksum.
fn rechecksummed() -> impl Strategy<Value = String> {
    let parts: Vec<(String, Vec<u8>)> = invoices().iter().map(|i| split_bech32(i)).collect();
    (
        any::<usize>(),
        prop::collection::vec(fuzzing::mutation(), 1..=4),
        prop_oneof![4 => Just(None), 1 => "[a-z0-9]{0,12}".prop_map(Some)],
    )
        .prop_map(move |(i, ms, hrp)| {
            let (valid_hrp, data) = &parts[i % parts.len()];
            let data: Vec<u8> = fuzzing::apply(data, &ms).iter().map(|v| v & 31).collect();
            bech32(hrp.as_deref().unwrap_or(valid_hrp), &data)
        })
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        1u64..100_000_000,
        any::<u64>(),
        Just(MAX_MSAT),
        Just(MAX_MSAT + 1)
    ]
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn node_ids(s in prop_oneof![
        fuzzing::text(80),
        fuzzing::mutated_text(public(2).to_string()),
    ]) {
        check_node_id(&s);
    }

    #[test]
    fn addresses(s in prop_oneof![
        fuzzing::text(80),
        fuzzing::mutated_any(
            ["127.0.0.1:9735", "[::1]:9735", "node.example.com:9735",
             "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion:9735"]
                .iter().map(|a| a.as_bytes().to_vec()).collect()
        ).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        check_address(&s);
    }

    #[test]
    fn channel_ids(s in prop_oneof![
        fuzzing::text(60),
        fuzzing::mutated_text(u128::MAX.to_string()),
    ]) {
        check_channel_id(&s);
    }

    #[test]
    fn invoices_as_text(
        s in prop_oneof![
            fuzzing::text(400),
            fuzzing::mutated_any(invoices().into_iter().map(String::into_bytes).collect())
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        amount_msat in amount(),
        own in 1u8..3,
    ) {
        check_payment(&s, amount_msat, own);
    }

    #[test]
    fn invoices_with_valid_checksums(s in rechecksummed(), amount_msat in amount(), own in 1u8..3) {
        check_payment(&s, amount_msat, own);
    }

    #[test]
    fn channel_amounts_hold(amount_sats in amount(), push_msat in amount()) {
        match channel_amounts(amount_sats, push_msat) {
            Ok(()) => prop_assert!(
                amount_sats > 0 && amount_sats <= MAX_SATS && push_msat <= amount_sats * 1000
            ),
            Err(e) => short(&e),
        }
    }

    #[test]
    fn invoice_requests(amount_msat in amount(), description in fuzzing::text(700), expiry in any::<u32>()) {
        match invoice_request(amount_msat, description, expiry) {
            Ok((_, expiry_used)) => prop_assert!(amount_msat <= MAX_MSAT && expiry_used > 0),
            Err(e) => short(&e),
        }
    }
}

#[test]
fn the_valid_inputs_pass() {
    let regtest = invoice(Currency::Regtest, Some(50_000));
    let (_, amount) = payment(&regtest, 0, Network::Regtest, &public(2)).unwrap();
    assert_eq!(amount, 50_000);
    // The checksum helper reproduces a real invoice, so its changes reach the decoder.
    let (hrp, data) = split_bech32(&regtest);
    assert_eq!(bech32(&hrp, &data), regtest);
    assert_eq!(
        payment(&regtest, 0, Network::Regtest, &public(1)).unwrap_err(),
        InputError::OwnInvoice
    );
    assert_eq!(
        payment(
            &invoice(Currency::Regtest, None),
            0,
            Network::Regtest,
            &public(2)
        )
        .unwrap_err(),
        InputError::AmountMissing
    );
    assert!(address("127.0.0.1:9735").is_ok());
}

#[test]
fn regression_long_input_is_quoted_short() {
    short(&node_id(&"x".repeat(4 << 20)).unwrap_err());
    // Characters that escape to ten bytes each.
    short(&node_id(&"\u{3347a}\0".repeat(100)).unwrap_err());
}

#[test]
fn regression_a_signed_port_reads_as_a_host_name() {
    check_address("127.0.0.1:+735");
    assert_eq!(
        address("127.0.0.1:+735").unwrap().to_string(),
        "127.0.0.1:735"
    );
}
