//! The JSON-RPC methods, shaped as bitcoind answers them. The set is what ldk-node's
//! bitcoind chain source and lightning-block-sync's `RpcClient` call
//! (getblockchaininfo, getblockheader, getblock with verbosity 0, getblockhash,
//! estimatesmartfee, getmempoolinfo, sendrawtransaction, getrawtransaction,
//! getrawmempool, getmempoolentry, gettxout) plus what tests need to drive the chain
//! (generatetoaddress, getnewaddress, getbalance, sendtoaddress, getblockcount,
//! getbestblockhash).

use std::{str::FromStr, sync::Mutex};

use bitcoin::{
    consensus::encode::{deserialize_hex, serialize_hex},
    Address, Amount, BlockHash, Network, OutPoint, Transaction, Txid,
};
use serde_json::{json, Value};

use crate::{chain::Chain, wallet::Wallet};

/// A JSON-RPC error object.
#[derive(Debug)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
    fn params(message: impl Into<String>) -> Self {
        RpcError::new(-32602, message)
    }
}

impl From<crate::ChainError> for RpcError {
    fn from(e: crate::ChainError) -> Self {
        RpcError::new(e.rpc_code(), e.to_string())
    }
}

/// The chain and its wallet, as the RPC server shares them.
pub struct Regtest {
    pub chain: Mutex<Chain>,
    pub wallet: Wallet,
}

fn param(params: &[Value], i: usize) -> Option<&Value> {
    params.get(i).filter(|v| !v.is_null())
}

fn str_param<'a>(params: &'a [Value], i: usize, name: &str) -> Result<&'a str, RpcError> {
    param(params, i)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::params(format!("missing or invalid parameter {name}")))
}

fn u64_param(params: &[Value], i: usize, name: &str) -> Result<u64, RpcError> {
    param(params, i)
        .and_then(Value::as_u64)
        .ok_or_else(|| RpcError::params(format!("missing or invalid parameter {name}")))
}

fn bool_param(params: &[Value], i: usize, default: bool) -> bool {
    match param(params, i) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) != 0,
        _ => default,
    }
}

fn parse_hash<T: FromStr>(s: &str, what: &str) -> Result<T, RpcError> {
    T::from_str(s)
        .map_err(|_| RpcError::new(-8, format!("{what} must be a 64-character hex string")))
}

fn parse_address(s: &str) -> Result<Address, RpcError> {
    Address::from_str(s)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| RpcError::new(-5, format!("Invalid regtest address: {s}")))
}

fn hex32(bytes: [u8; 32]) -> String {
    hex::encode(bytes)
}

fn btc(amount: Amount) -> Value {
    json!(amount.to_btc())
}

impl Regtest {
    fn chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one call.
    pub fn call(&self, method: &str, params: &[Value]) -> Result<Value, RpcError> {
        match method {
            "getblockchaininfo" => {
                let c = self.chain();
                let h = c.height();
                Ok(json!({
                    "chain": "regtest",
                    "blocks": h,
                    "headers": h,
                    "bestblockhash": c.tip_hash().to_string(),
                    "difficulty": 4.656542373906925e-10,
                    "time": c.block_at(h).map(|b| b.header.time),
                    "mediantime": c.median_time_past(h),
                    "verificationprogress": 1,
                    "initialblockdownload": false,
                    "chainwork": hex32(c.tip_chainwork().to_be_bytes()),
                    "pruned": false,
                    "warnings": "",
                }))
            }
            "getblockcount" => Ok(json!(self.chain().height())),
            "getbestblockhash" => Ok(json!(self.chain().tip_hash().to_string())),
            "getblockhash" => {
                let h = u64_param(params, 0, "height")?;
                let c = self.chain();
                u32::try_from(h)
                    .ok()
                    .and_then(|h| c.hash_at(h))
                    .map(|hash| json!(hash.to_string()))
                    .ok_or_else(|| RpcError::new(-8, "Block height out of range"))
            }
            "getblockheader" => {
                let hash: BlockHash = parse_hash(str_param(params, 0, "blockhash")?, "blockhash")?;
                let verbose = bool_param(params, 1, true);
                let c = self.chain();
                let height = c
                    .height_of(&hash)
                    .ok_or_else(|| RpcError::new(-5, "Block not found"))?;
                let block = c.block_at(height).expect("indexed");
                if !verbose {
                    return Ok(json!(serialize_hex(&block.header)));
                }
                Ok(self.header_json(&c, height))
            }
            "getblock" => {
                let hash: BlockHash = parse_hash(str_param(params, 0, "blockhash")?, "blockhash")?;
                let verbosity = param(params, 1)
                    .map(|v| {
                        v.as_u64()
                            .unwrap_or(if v.as_bool() == Some(false) { 0 } else { 1 })
                    })
                    .unwrap_or(1);
                let c = self.chain();
                let height = c
                    .height_of(&hash)
                    .ok_or_else(|| RpcError::new(-5, "Block not found"))?;
                let block = c.block_at(height).expect("indexed");
                if verbosity == 0 {
                    return Ok(json!(serialize_hex(block)));
                }
                let mut v = self.header_json(&c, height);
                v["tx"] = json!(block
                    .txdata
                    .iter()
                    .map(|t| t.compute_txid().to_string())
                    .collect::<Vec<_>>());
                v["size"] = json!(block.total_size());
                v["weight"] = json!(block.weight().to_wu());
                Ok(v)
            }
            // The relay floor, 1 sat/vB, for any target: what a quiet chain
            // estimates. (bitcoind on a fresh regtest chain has no estimate, and
            // ldk-node then logs an error on every fee update before using the
            // same 1 sat/vB fallback.)
            "estimatesmartfee" => Ok(json!({
                "feerate": 0.00001,
                "blocks": param(params, 0).and_then(Value::as_u64).unwrap_or(1).max(1),
            })),
            "getmempoolinfo" => {
                let c = self.chain();
                let bytes: usize = c.mempool().iter().map(|m| m.tx.vsize()).sum();
                Ok(json!({
                    "loaded": true,
                    "size": c.mempool().len(),
                    "bytes": bytes,
                    "usage": bytes,
                    "maxmempool": 300_000_000,
                    "mempoolminfee": 0.00001,
                    "minrelaytxfee": 0.00001,
                    "incrementalrelayfee": 0.00001,
                    "unbroadcastcount": 0,
                    "fullrbf": true,
                }))
            }
            "sendrawtransaction" => {
                let hex_tx = str_param(params, 0, "hexstring")?;
                let tx: Transaction = deserialize_hex(hex_tx)
                    .map_err(|e| RpcError::new(-22, format!("TX decode failed: {e}")))?;
                let txid = tx.compute_txid();
                match self.chain().accept(tx) {
                    Ok(txid) => {
                        tracing::info!(%txid, "accepted transaction");
                        Ok(json!(txid.to_string()))
                    }
                    Err(e) => {
                        tracing::info!(%txid, reason = %e, "refused transaction");
                        Err(e.into())
                    }
                }
            }
            "getrawtransaction" => {
                let txid: Txid = parse_hash(str_param(params, 0, "txid")?, "txid")?;
                let verbose = bool_param(params, 1, false);
                let c = self.chain();
                let (tx, block) = c.transaction(&txid).ok_or_else(|| {
                    RpcError::new(
                        -5,
                        "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
                    )
                })?;
                if !verbose {
                    return Ok(json!(serialize_hex(&tx)));
                }
                let confirmations = block
                    .and_then(|b| c.height_of(&b))
                    .map(|h| c.height() - h + 1)
                    .unwrap_or(0);
                Ok(json!({
                    "txid": txid.to_string(),
                    "hash": tx.compute_wtxid().to_string(),
                    "hex": serialize_hex(&tx),
                    "vsize": tx.vsize(),
                    "blockhash": block.map(|b| b.to_string()),
                    "confirmations": confirmations,
                }))
            }
            "getrawmempool" => {
                let verbose = bool_param(params, 0, false);
                let c = self.chain();
                if verbose {
                    let mut map = serde_json::Map::new();
                    for m in c.mempool() {
                        map.insert(m.txid.to_string(), mempool_entry_json(m));
                    }
                    return Ok(Value::Object(map));
                }
                Ok(json!(c
                    .mempool()
                    .iter()
                    .map(|m| m.txid.to_string())
                    .collect::<Vec<_>>()))
            }
            "getmempoolentry" => {
                let txid: Txid = parse_hash(str_param(params, 0, "txid")?, "txid")?;
                let c = self.chain();
                c.mempool_entry(&txid)
                    .map(mempool_entry_json)
                    .ok_or_else(|| RpcError::new(-5, "Transaction not in mempool"))
            }
            "gettxout" => {
                let txid: Txid = parse_hash(str_param(params, 0, "txid")?, "txid")?;
                let vout = u64_param(params, 1, "n")?;
                let include_mempool = bool_param(params, 2, true);
                let op = OutPoint::new(
                    txid,
                    u32::try_from(vout).map_err(|_| RpcError::params("n out of range"))?,
                );
                let c = self.chain();
                let tip = c.tip_hash().to_string();
                if let Some(coin) = c.confirmed_coin(&op, include_mempool) {
                    return Ok(json!({
                        "bestblock": tip,
                        "confirmations": c.height() - coin.height + 1,
                        "value": btc(coin.txout.value),
                        "scriptPubKey": script_json(&coin.txout.script_pubkey),
                        "coinbase": coin.coinbase,
                    }));
                }
                if include_mempool {
                    if let Some(out) = c.mempool_output(&op) {
                        return Ok(json!({
                            "bestblock": tip,
                            "confirmations": 0,
                            "value": btc(out.value),
                            "scriptPubKey": script_json(&out.script_pubkey),
                            "coinbase": false,
                        }));
                    }
                }
                Ok(Value::Null)
            }
            "generatetoaddress" => {
                let n = u64_param(params, 0, "nblocks")?;
                if n > 10_000 {
                    return Err(RpcError::params("nblocks must be at most 10000"));
                }
                let address = parse_address(str_param(params, 1, "address")?)?;
                let hashes = self.chain().mine(n as u32, &address.script_pubkey())?;
                tracing::info!(blocks = n, height = self.chain().height(), "mined");
                Ok(json!(hashes
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()))
            }
            "getnewaddress" => Ok(json!(self.wallet.address().to_string())),
            "getbalance" => Ok(btc(self.wallet.balance(&self.chain()))),
            "sendtoaddress" => {
                let address = parse_address(str_param(params, 0, "address")?)?;
                let amount = param(params, 1)
                    .and_then(|v| {
                        v.as_f64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
                    .and_then(|btc| Amount::from_btc(btc).ok())
                    .filter(|a| *a > Amount::ZERO)
                    .ok_or_else(|| RpcError::new(-3, "Invalid amount"))?;
                let txid = self.wallet.send(&mut self.chain(), &address, amount)?;
                tracing::info!(%txid, %address, %amount, "wallet paid");
                Ok(json!(txid.to_string()))
            }
            "uptime" => Ok(json!(0)),
            _ => Err(RpcError::new(-32601, "Method not found")),
        }
    }

    fn header_json(&self, c: &Chain, height: u32) -> Value {
        let block = c.block_at(height).expect("height in range");
        let h = &block.header;
        let mut v = json!({
            "hash": block.block_hash().to_string(),
            "confirmations": c.height() - height + 1,
            "height": height,
            "version": h.version.to_consensus(),
            "versionHex": format!("{:08x}", h.version.to_consensus()),
            "merkleroot": h.merkle_root.to_string(),
            "time": h.time,
            "mediantime": c.median_time_past(height),
            "nonce": h.nonce,
            "bits": format!("{:08x}", h.bits.to_consensus()),
            "difficulty": 4.656542373906925e-10,
            "chainwork": hex32(c.chainwork_at(height).expect("height in range").to_be_bytes()),
            "nTx": block.txdata.len(),
        });
        if height > 0 {
            v["previousblockhash"] = json!(h.prev_blockhash.to_string());
        }
        if let Some(next) = c.hash_at(height + 1) {
            v["nextblockhash"] = json!(next.to_string());
        }
        v
    }
}

fn mempool_entry_json(m: &crate::chain::MempoolTx) -> Value {
    json!({
        "vsize": m.tx.vsize(),
        "weight": m.tx.weight().to_wu(),
        "time": m.time,
        "height": m.height,
        "fees": { "base": m.fee.to_btc() },
        "bip125-replaceable": true,
    })
}

fn script_json(script: &bitcoin::ScriptBuf) -> Value {
    let mut v = json!({ "hex": hex::encode(script.as_bytes()) });
    if let Ok(addr) = Address::from_script(script, Network::Regtest) {
        v["address"] = json!(addr.to_string());
    }
    v
}
