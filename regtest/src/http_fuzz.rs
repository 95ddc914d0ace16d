//! Fuzzes the JSON-RPC server ([`connection`]): the HTTP request head, the body's
//! JSON and every method's parameters, fed as one byte stream to a real in-memory
//! chain. Whatever a client sends, each answer is a well-formed HTTP response with
//! a JSON body and a status bitcoind would use, never a panic.

use std::cell::RefCell;

use bitcoin::{consensus::encode::serialize_hex, secp256k1::SecretKey};
use lnswarm_common::fuzzing;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{basic_auth, connection};
use crate::{rpc::Regtest, Chain, Wallet};

/// Past this height the chain is started again, so mined blocks do not pile up.
const RESET_HEIGHT: u32 = 3_000;

/// A chain whose wallet has mature coins, and valid requests naming its blocks.
struct Fixture {
    regtest: Regtest,
    requests: Vec<Vec<u8>>,
}

fn auth() -> String {
    basic_auth("user", "password")
}

fn request(body: &Value, extra_header: &str) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\n{extra_header}Content-Length: {}\r\n\r\n{body}",
        auth(),
        body.len()
    )
    .into_bytes()
}

fn call(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "1.0", "id": 7, "method": method, "params": params})
}

impl Fixture {
    fn new() -> Self {
        let wallet = Wallet::from_key(SecretKey::from_slice(&[3; 32]).expect("key"));
        let address = wallet.address().to_string();
        let mut chain = Chain::in_memory();
        chain.mine(101, &wallet.script()).expect("mine");
        let block = chain.block_at(1).expect("block 1").clone();
        let hash = block.block_hash().to_string();
        let coinbase = &block.txdata[0];
        let txid = coinbase.compute_txid().to_string();
        let calls = [
            call("getblockchaininfo", json!([])),
            call("getblockcount", json!([])),
            call("getbestblockhash", json!([])),
            call("getblockhash", json!([1])),
            call("getblockheader", json!([hash, false])),
            call("getblockheader", json!([hash])),
            call("getblock", json!([hash, 0])),
            call("getblock", json!([hash, 1])),
            call("estimatesmartfee", json!([6, "ECONOMICAL"])),
            call("getmempoolinfo", json!([])),
            call("sendrawtransaction", json!([serialize_hex(coinbase)])),
            call("getrawtransaction", json!([txid, true])),
            call("getrawmempool", json!([true])),
            call("getmempoolentry", json!([txid])),
            call("gettxout", json!([txid, 0, true])),
            call("generatetoaddress", json!([1, address])),
            call("getnewaddress", json!([])),
            call("getbalance", json!([])),
            call("sendtoaddress", json!([address, 0.001])),
            call("uptime", json!(null)),
        ];
        let mut requests: Vec<Vec<u8>> = calls.iter().map(|c| request(c, "")).collect();
        requests.push(request(&Value::Array(calls[..4].to_vec()), ""));
        // Two requests on one keep-alive connection, then one that closes it.
        let mut pipelined = request(&calls[3], "");
        pipelined.extend(request(&calls[13], "Connection: close\r\n"));
        requests.push(pipelined);
        requests.push(b"GET / HTTP/1.0\r\n\r\n".to_vec());
        Fixture {
            regtest: Regtest {
                chain: std::sync::Mutex::new(chain),
                wallet,
            },
            requests,
        }
    }
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
}

/// Feeds `input` to a connection and checks every answer.
fn check(input: &[u8]) {
    check_responses(&serve(input));
}

/// What a connection answers to `input`.
fn serve(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    with_fixture(|f| {
        // An error only ends the connection (a bad header, a short body).
        RUNTIME.with(|rt| rt.block_on(connection(input, &mut out, &f.regtest, &auth())))
    })
    .ok();
    out
}

/// `out` is a sequence of complete HTTP/1.1 responses, each with a JSON body.
fn check_responses(mut out: &[u8]) {
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = std::str::from_utf8(&out[..end]).expect("an ASCII head");
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|h| h.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head:?}"));
        assert!([200, 401, 404, 413, 500].contains(&status), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|l| l.parse().ok())
            .expect("a Content-Length");
        let body = &out[end + 4..end + 4 + length];
        let body: Value = serde_json::from_slice(body).expect("a JSON body");
        if status == 500 || status == 404 {
            assert!(body["error"]["code"].is_i64(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        out = &out[end + 4 + length..];
    }
}

/// Runs `f` with a fixture whose chain is not too long.
fn with_fixture<T>(f: impl FnOnce(&Fixture) -> T) -> T {
    FIXTURE.with(|cell| {
        let stale = cell
            .borrow()
            .as_ref()
            .is_none_or(|fx| fx.regtest.chain.lock().expect("chain").height() > RESET_HEIGHT);
        if stale {
            *cell.borrow_mut() = Some(Fixture::new());
        }
        f(cell.borrow().as_ref().expect("fixture"))
    })
}

proptest! {
    #![proptest_config(fuzzing::config(300))]

    #[test]
    fn arbitrary_bytes(input in fuzzing::bytes(400)) {
        check(&input);
    }

    #[test]
    fn mutated_requests(i in any::<usize>(), ms in prop::collection::vec(fuzzing::mutation(), 1..=4)) {
        let input = with_fixture(|f| fuzzing::apply(&f.requests[i % f.requests.len()], &ms));
        check(&input);
    }

    #[test]
    fn arbitrary_params(i in any::<usize>(), params in prop::collection::vec(params(), 0..4)) {
        let methods = ["getblockhash", "getblockheader", "getblock", "estimatesmartfee",
            "sendrawtransaction", "getrawtransaction", "getrawmempool", "getmempoolentry",
            "gettxout", "generatetoaddress", "sendtoaddress", "nosuchmethod"];
        let body = call(methods[i % methods.len()], Value::Array(params));
        check(&request(&body, ""));
    }
}

/// Parameters of every JSON type, and values near the valid ones.
fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..200).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        fuzzing::text(80).prop_map(Value::from),
        "[0-9a-f]{64}".prop_map(Value::from),
        Just(Value::from("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")),
        Just(json!([1, "x"])),
        Just(json!({"a": 1})),
    ]
}

#[test]
fn the_valid_requests_are_answered_200() {
    let requests = with_fixture(|f| f.requests.clone());
    for r in requests.iter().take(3) {
        let out = serve(r);
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        check_responses(&out);
    }
}
