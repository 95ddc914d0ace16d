//! `lnswarm-regtest` as a client sees it over JSON-RPC: it mines real blocks, pays
//! from its wallet only once coinbases mature, refuses double spends and
//! transactions that spend more than their inputs, checks basic auth, and keeps its
//! chain across a restart.

use std::str::FromStr;

use bitcoin::{
    absolute::LockTime,
    consensus::encode::{deserialize_hex, serialize_hex},
    ecdsa,
    secp256k1::{Message, Secp256k1, SecretKey},
    sighash::{EcdsaSighashType, SighashCache},
    transaction::Version,
    Address, Amount, Block, CompressedPublicKey, Network, OutPoint, PrivateKey, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Witness,
};
use lnswarm_tests::lightning::Regtest;
use serde_json::json;

struct Key {
    sk: SecretKey,
    pk: CompressedPublicKey,
    address: Address,
}

fn key(n: u8) -> Key {
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[n; 32]).unwrap();
    let pk = CompressedPublicKey::from_private_key(&secp, &PrivateKey::new(sk, Network::Regtest))
        .unwrap();
    Key {
        sk,
        pk,
        address: Address::p2wpkh(&pk, Network::Regtest),
    }
}

/// A signed P2WPKH spend of `prev` (worth `prev_value`) paying `pay` to `to`.
fn spend(k: &Key, prev: OutPoint, prev_value: Amount, to: &Address, pay: Amount) -> Transaction {
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: pay,
            script_pubkey: to.script_pubkey(),
        }],
    };
    let secp = Secp256k1::new();
    let sighash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(
            0,
            &k.address.script_pubkey(),
            prev_value,
            EcdsaSighashType::All,
        )
        .unwrap();
    let sig = ecdsa::Signature {
        signature: secp.sign_ecdsa(&Message::from(sighash), &k.sk),
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].witness = Witness::p2wpkh(&sig, &k.pk.0);
    tx
}

#[tokio::test]
async fn regtest_mines_real_blocks_and_refuses_double_spends_and_overspends() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Regtest::start(dir.path()).await;

    // Wrong password: refused at the HTTP layer.
    let refused = chain
        .rpc_with_auth("getblockcount", json!([]), "lnswarm", "wrong")
        .await;
    assert_eq!(refused.unwrap_err().0, -401);

    // A fresh chain has nothing mature to pay from.
    assert_eq!(chain.height().await, 0);
    chain.mine(1).await;
    let alice = key(1);
    let err = chain
        .rpc("sendtoaddress", json!([alice.address.to_string(), 1.0]))
        .await
        .unwrap_err();
    assert_eq!(err.0, -6, "{err:?}");

    // Blocks are real: they decode, their merkle root and proof of work check out,
    // and they chain.
    chain.mine(100).await;
    assert_eq!(chain.height().await, 101);
    let tip = chain.rpc("getbestblockhash", json!([])).await.unwrap();
    let raw = chain.rpc("getblock", json!([tip, 0])).await.unwrap();
    let block: Block = deserialize_hex(raw.as_str().unwrap()).unwrap();
    assert!(block.check_merkle_root());
    assert!(block.check_witness_commitment());
    assert!(block.header.validate_pow(block.header.target()).is_ok());
    assert_eq!(block.block_hash().to_string(), tip.as_str().unwrap());
    let header = chain.rpc("getblockheader", json!([tip])).await.unwrap();
    assert_eq!(header["height"], 101);
    assert_eq!(
        header["previousblockhash"],
        chain.rpc("getblockhash", json!([100])).await.unwrap()
    );

    // The wallet pays from its mature coinbases.
    let funding_txid = chain.send(&alice.address.to_string(), 1.0).await;
    let mempool = chain.rpc("getrawmempool", json!([false])).await.unwrap();
    assert_eq!(mempool, json!([funding_txid]));
    chain.mine(1).await;
    let funding: Transaction = deserialize_hex(
        chain
            .rpc("getrawtransaction", json!([funding_txid]))
            .await
            .unwrap()
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let vout = funding
        .output
        .iter()
        .position(|o| o.script_pubkey == alice.address.script_pubkey())
        .unwrap() as u32;
    let coin = OutPoint::new(funding.compute_txid(), vout);
    let utxo = chain
        .rpc("gettxout", json!([coin.txid.to_string(), vout, false]))
        .await
        .unwrap();
    assert_eq!(utxo["value"], json!(1.0));

    let bob = key(2);
    let carol = key(3);
    let one_btc = Amount::from_btc(1.0).unwrap();
    let pay_bob = spend(
        &alice,
        coin,
        one_btc,
        &bob.address,
        Amount::from_sat(99_990_000),
    );
    let pay_carol = spend(
        &alice,
        coin,
        one_btc,
        &carol.address,
        Amount::from_sat(99_990_000),
    );

    // Spending more than the input is refused.
    let overspend = spend(
        &alice,
        coin,
        one_btc,
        &bob.address,
        Amount::from_sat(100_000_001),
    );
    let err = chain
        .rpc("sendrawtransaction", json!([serialize_hex(&overspend)]))
        .await
        .unwrap_err();
    assert_eq!(err.0, -26, "{err:?}");
    assert!(err.1.contains("bad-txns-in-belowout"), "{err:?}");

    // The first spend is accepted; the double spend is refused while it waits...
    let txid = chain
        .rpc("sendrawtransaction", json!([serialize_hex(&pay_bob)]))
        .await
        .unwrap();
    assert_eq!(txid.as_str().unwrap(), pay_bob.compute_txid().to_string());
    let err = chain
        .rpc("sendrawtransaction", json!([serialize_hex(&pay_carol)]))
        .await
        .unwrap_err();
    assert_eq!(err.0, -26, "{err:?}");
    assert!(err.1.contains("txn-mempool-conflict"), "{err:?}");

    // ...and once the first is mined.
    chain.mine(1).await;
    let err = chain
        .rpc("sendrawtransaction", json!([serialize_hex(&pay_carol)]))
        .await
        .unwrap_err();
    assert_eq!(err.0, -25, "{err:?}");
    assert!(err.1.contains("missingorspent"), "{err:?}");
    assert!(chain
        .rpc("gettxout", json!([coin.txid.to_string(), vout, true]))
        .await
        .unwrap()
        .is_null());

    // An output that never existed cannot be spent.
    let ghost = OutPoint::new(
        bitcoin::Txid::from_str("11".repeat(32).as_str()).unwrap(),
        0,
    );
    let err = chain
        .rpc(
            "sendrawtransaction",
            json!([serialize_hex(&spend(
                &alice,
                ghost,
                one_btc,
                &bob.address,
                Amount::from_sat(1000)
            ))]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.0, -25, "{err:?}");

    // Fee estimation answers the relay floor (1 sat/vB) for the target asked, so
    // nodes have an estimate instead of logging an error on every fee update.
    let fee = chain
        .rpc("estimatesmartfee", json!([6, "ECONOMICAL"]))
        .await
        .unwrap();
    assert_eq!(fee["feerate"], json!(0.00001), "{fee}");
    assert_eq!(fee["blocks"], json!(6), "{fee}");
    assert!(fee.get("errors").is_none(), "{fee}");

    // The chain survives a restart.
    let height = chain.height().await;
    let tip = chain.rpc("getbestblockhash", json!([])).await.unwrap();
    let chain = chain.restart().await;
    assert_eq!(chain.height().await, height);
    assert_eq!(chain.rpc("getbestblockhash", json!([])).await.unwrap(), tip);
    let bob_coin = chain
        .rpc(
            "gettxout",
            json!([pay_bob.compute_txid().to_string(), 0, true]),
        )
        .await
        .unwrap();
    assert_eq!(bob_coin["value"], json!(0.9999));
    let err = chain
        .rpc("sendrawtransaction", json!([serialize_hex(&pay_carol)]))
        .await
        .unwrap_err();
    assert_eq!(err.0, -25, "{err:?}");
}
