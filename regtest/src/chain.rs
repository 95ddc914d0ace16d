//! The chain itself: blocks from the regtest genesis on, the set of unspent outputs,
//! the mempool, the rules a transaction must pass to enter the mempool, and mining.
//!
//! Everything lives in memory and is rebuilt from the block file on start
//! ([`crate::store`]); every new block is appended to that file before it is
//! visible to callers.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use bitcoin::{
    absolute::LockTime,
    block::{Header, Version},
    blockdata::{constants::genesis_block, opcodes::OP_0, script::PushBytesBuf},
    hashes::Hash,
    Amount, Block, BlockHash, CompactTarget, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxMerkleNode, TxOut, Txid, Witness, Work,
};

use crate::store::Store;

/// Regtest: coinbase outputs can be spent once they have this many confirmations.
pub const COINBASE_MATURITY: u32 = 100;
/// Regtest halves the subsidy every 150 blocks.
const HALVING_INTERVAL: u32 = 150;
/// The easiest target, as regtest uses.
const REGTEST_BITS: u32 = 0x207f_ffff;

/// Why a transaction or request was refused. The message is the reason string
/// bitcoind uses where there is one; [`ChainError::rpc_code`] its RPC error code.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("TX decode failed: {0}")]
    Decode(String),
    #[error("bad-txns-vin-empty")]
    NoInputs,
    #[error("bad-txns-vout-empty")]
    NoOutputs,
    #[error("coinbase")]
    Coinbase,
    #[error("bad-txns-inputs-duplicate")]
    DuplicateInputs,
    #[error("bad-txns-vout-toolarge")]
    OutputTooLarge,
    #[error("bad-txns-inputs-missingorspent: {0} is unknown or already spent")]
    MissingOrSpent(OutPoint),
    #[error("bad-txns-premature-spend-of-coinbase: {0} has {1} confirmations, needs {COINBASE_MATURITY}")]
    PrematureCoinbase(OutPoint, u32),
    #[error("bad-txns-in-belowout, value in ({0}) < value out ({1})")]
    InBelowOut(Amount, Amount),
    #[error("non-final")]
    NonFinal,
    #[error("txn-mempool-conflict: spends an output that mempool transaction {0} already spends, and does not pay a higher fee to replace it")]
    MempoolConflict(Txid),
    #[error("Transaction already in block chain")]
    AlreadyInChain,
    #[error("{0}")]
    NotFound(String),
    #[error("Block height out of range")]
    HeightOutOfRange,
    #[error("Insufficient funds")]
    InsufficientFunds,
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
}

impl ChainError {
    /// bitcoind's RPC error code for this refusal.
    pub fn rpc_code(&self) -> i64 {
        match self {
            ChainError::Decode(_) => -22,
            ChainError::MissingOrSpent(_) => -25,
            ChainError::AlreadyInChain => -27,
            ChainError::NotFound(_) => -5,
            ChainError::HeightOutOfRange => -8,
            ChainError::InsufficientFunds => -6,
            ChainError::Storage(_) => -1,
            _ => -26,
        }
    }
}

/// An unspent confirmed output.
#[derive(Clone, Debug)]
pub struct Coin {
    pub txout: TxOut,
    pub height: u32,
    pub coinbase: bool,
}

/// A transaction waiting in the mempool.
#[derive(Clone, Debug)]
pub struct MempoolTx {
    pub tx: Transaction,
    pub txid: Txid,
    /// Unix time it entered the mempool.
    pub time: u64,
    /// Chain height when it entered.
    pub height: u32,
    pub fee: Amount,
}

struct BlockEntry {
    block: Block,
    hash: BlockHash,
    chainwork: Work,
}

pub struct Chain {
    blocks: Vec<BlockEntry>,
    by_hash: HashMap<BlockHash, u32>,
    utxos: HashMap<OutPoint, Coin>,
    /// Confirmed transactions: txid → (height, index in block).
    tx_index: HashMap<Txid, (u32, usize)>,
    /// Topologically ordered: a transaction comes after the ones it spends.
    mempool: Vec<MempoolTx>,
    store: Option<Store>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Chain {
    /// A chain of only the regtest genesis block, kept in memory.
    pub fn in_memory() -> Self {
        let genesis = genesis_block(Network::Regtest);
        let hash = genesis.block_hash();
        let chainwork = genesis.header.work();
        let mut by_hash = HashMap::new();
        by_hash.insert(hash, 0);
        Chain {
            blocks: vec![BlockEntry {
                block: genesis,
                hash,
                chainwork,
            }],
            by_hash,
            utxos: HashMap::new(),
            tx_index: HashMap::new(),
            mempool: Vec::new(),
            store: None,
        }
    }

    /// Opens (or creates) the chain kept in `dir`, replaying its blocks and mempool.
    pub fn open(dir: &Path) -> Result<Self, ChainError> {
        let (store, blocks, mempool) = Store::open(dir)?;
        let mut chain = Chain::in_memory();
        for block in blocks {
            if block.header.prev_blockhash != chain.tip_hash() {
                return Err(ChainError::Storage(std::io::Error::other(format!(
                    "block file is corrupt: block {} does not build on {}",
                    block.block_hash(),
                    chain.tip_hash()
                ))));
            }
            chain.connect(block);
        }
        for (tx, time) in mempool {
            // Transactions that no longer fit are dropped, as bitcoind does.
            if chain.accept(tx).is_ok() {
                if let Some(last) = chain.mempool.last_mut() {
                    last.time = time;
                }
            }
        }
        chain.store = Some(store);
        Ok(chain)
    }

    pub fn height(&self) -> u32 {
        (self.blocks.len() - 1) as u32
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.blocks.last().expect("genesis").hash
    }

    pub fn tip_chainwork(&self) -> Work {
        self.blocks.last().expect("genesis").chainwork
    }

    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        self.by_hash.get(hash).copied()
    }

    pub fn block_at(&self, height: u32) -> Option<&Block> {
        self.blocks.get(height as usize).map(|e| &e.block)
    }

    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.blocks.get(height as usize).map(|e| e.hash)
    }

    pub fn chainwork_at(&self, height: u32) -> Option<Work> {
        self.blocks.get(height as usize).map(|e| e.chainwork)
    }

    /// Median of the last 11 block times up to `height`.
    pub fn median_time_past(&self, height: u32) -> u32 {
        let start = (height as usize + 1).saturating_sub(11);
        let mut times: Vec<u32> = self.blocks[start..=height as usize]
            .iter()
            .map(|e| e.block.header.time)
            .collect();
        times.sort_unstable();
        times[times.len() / 2]
    }

    pub fn mempool(&self) -> &[MempoolTx] {
        &self.mempool
    }

    pub fn mempool_entry(&self, txid: &Txid) -> Option<&MempoolTx> {
        self.mempool.iter().find(|m| &m.txid == txid)
    }

    /// A transaction from the mempool or the chain, with the hash of the block that
    /// confirms it.
    pub fn transaction(&self, txid: &Txid) -> Option<(Transaction, Option<BlockHash>)> {
        if let Some(m) = self.mempool_entry(txid) {
            return Some((m.tx.clone(), None));
        }
        let (height, index) = self.tx_index.get(txid)?;
        let entry = &self.blocks[*height as usize];
        Some((entry.block.txdata[*index].clone(), Some(entry.hash)))
    }

    /// A confirmed unspent output (`include_mempool`: and not spent by the mempool).
    pub fn confirmed_coin(&self, outpoint: &OutPoint, include_mempool: bool) -> Option<&Coin> {
        let coin = self.utxos.get(outpoint)?;
        if include_mempool && self.mempool_spender(outpoint).is_some() {
            return None;
        }
        Some(coin)
    }

    /// An output created by a mempool transaction and not spent in the mempool.
    pub fn mempool_output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        let m = self.mempool_entry(&outpoint.txid)?;
        let out = m.tx.output.get(outpoint.vout as usize)?.clone();
        self.mempool_spender(outpoint).is_none().then_some(out)
    }

    fn mempool_spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.mempool
            .iter()
            .find(|m| m.tx.input.iter().any(|i| &i.previous_output == outpoint))
            .map(|m| m.txid)
    }

    /// Every spendable output paying `script`: confirmed ones first (with their
    /// height and whether they are coinbase), then unconfirmed ones from the mempool.
    /// Outputs already spent by the mempool are left out.
    pub fn outputs_paying(&self, script: &ScriptBuf) -> Vec<(OutPoint, TxOut, Option<Coin>)> {
        let mut out: Vec<_> = self
            .utxos
            .iter()
            .filter(|(op, c)| {
                &c.txout.script_pubkey == script && self.mempool_spender(op).is_none()
            })
            .map(|(op, c)| (*op, c.txout.clone(), Some(c.clone())))
            .collect();
        out.sort_by_key(|(op, _, c)| (c.as_ref().map(|c| c.height), op.txid, op.vout));
        for m in &self.mempool {
            for (vout, txout) in m.tx.output.iter().enumerate() {
                let op = OutPoint::new(m.txid, vout as u32);
                if &txout.script_pubkey == script && self.mempool_spender(&op).is_none() {
                    out.push((op, txout.clone(), None));
                }
            }
        }
        out
    }

    /// Validates `tx` against the chain and mempool and adds it to the mempool.
    ///
    /// Checked: not a coinbase; has inputs and outputs; no duplicate inputs; output
    /// values in range; every input spends an existing unspent output (confirmed or
    /// in the mempool); coinbase outputs are mature; inputs cover outputs; absolute
    /// locktime is final for the next block. A transaction that conflicts with
    /// mempool transactions replaces them (and their descendants) only if it pays a
    /// strictly higher fee than all of them together (full RBF, as bitcoind ≥ 28).
    /// Not checked: scripts and signatures, relative timelocks, standardness.
    pub fn accept(&mut self, tx: Transaction) -> Result<Txid, ChainError> {
        let txid = tx.compute_txid();
        if self.mempool_entry(&txid).is_some() {
            return Ok(txid);
        }
        if self.tx_index.contains_key(&txid) {
            return Err(ChainError::AlreadyInChain);
        }
        if tx.is_coinbase() {
            return Err(ChainError::Coinbase);
        }
        if tx.input.is_empty() {
            return Err(ChainError::NoInputs);
        }
        if tx.output.is_empty() {
            return Err(ChainError::NoOutputs);
        }
        let mut seen = HashSet::new();
        if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
            return Err(ChainError::DuplicateInputs);
        }
        let mut value_out = Amount::ZERO;
        for o in &tx.output {
            value_out = value_out
                .checked_add(o.value)
                .filter(|v| *v <= Amount::MAX_MONEY)
                .ok_or(ChainError::OutputTooLarge)?;
        }

        let next_height = self.height() + 1;
        let mut conflicts: Vec<Txid> = Vec::new();
        let mut value_in = Amount::ZERO;
        for input in &tx.input {
            let op = input.previous_output;
            let txout = if let Some(coin) = self.utxos.get(&op) {
                if coin.coinbase && next_height - coin.height < COINBASE_MATURITY {
                    return Err(ChainError::PrematureCoinbase(op, next_height - coin.height));
                }
                coin.txout.clone()
            } else if let Some(out) = self
                .mempool_entry(&op.txid)
                .and_then(|m| m.tx.output.get(op.vout as usize).cloned())
            {
                out
            } else {
                return Err(ChainError::MissingOrSpent(op));
            };
            if let Some(spender) = self.mempool_spender(&op) {
                if !conflicts.contains(&spender) {
                    conflicts.push(spender);
                }
            }
            value_in = value_in
                .checked_add(txout.value)
                .ok_or(ChainError::OutputTooLarge)?;
        }
        if value_in < value_out {
            return Err(ChainError::InBelowOut(value_in, value_out));
        }
        if !self.is_final(&tx, next_height) {
            return Err(ChainError::NonFinal);
        }
        let fee = value_in - value_out;

        if !conflicts.is_empty() {
            let replaced = self.with_descendants(&conflicts);
            // The replacement may not spend what it replaces.
            if tx
                .input
                .iter()
                .any(|i| replaced.contains(&i.previous_output.txid))
            {
                return Err(ChainError::MempoolConflict(conflicts[0]));
            }
            let replaced_fee: Amount = self
                .mempool
                .iter()
                .filter(|m| replaced.contains(&m.txid))
                .map(|m| m.fee)
                .sum();
            if fee <= replaced_fee {
                return Err(ChainError::MempoolConflict(conflicts[0]));
            }
            self.mempool.retain(|m| !replaced.contains(&m.txid));
        }

        self.mempool.push(MempoolTx {
            tx,
            txid,
            time: now_secs(),
            height: self.height(),
            fee,
        });
        self.persist_mempool()?;
        Ok(txid)
    }

    fn with_descendants(&self, roots: &[Txid]) -> HashSet<Txid> {
        let mut set: HashSet<Txid> = roots.iter().copied().collect();
        // The mempool is topologically ordered, so one pass finds every descendant.
        for m in &self.mempool {
            if m.tx
                .input
                .iter()
                .any(|i| set.contains(&i.previous_output.txid))
            {
                set.insert(m.txid);
            }
        }
        set
    }

    fn is_final(&self, tx: &Transaction, next_height: u32) -> bool {
        if tx.input.iter().all(|i| i.sequence == Sequence::MAX) {
            return true;
        }
        match tx.lock_time {
            LockTime::Blocks(h) => h.to_consensus_u32() < next_height,
            LockTime::Seconds(t) => {
                (t.to_consensus_u32() as u64) < self.median_time_past(self.height()) as u64
                    || (t.to_consensus_u32() as u64) < now_secs()
            }
        }
    }

    /// Mines `count` blocks paying the subsidy and fees to `script`, each holding the
    /// whole mempool at that moment.
    pub fn mine(&mut self, count: u32, script: &ScriptBuf) -> Result<Vec<BlockHash>, ChainError> {
        let mut hashes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let block = self.build_block(script);
            if let Some(store) = &mut self.store {
                store.append_block(&block)?;
            }
            hashes.push(block.block_hash());
            self.connect(block);
            self.mempool.clear();
            self.persist_mempool()?;
        }
        Ok(hashes)
    }

    fn build_block(&self, script: &ScriptBuf) -> Block {
        let height = self.height() + 1;
        let fees: Amount = self.mempool.iter().map(|m| m.fee).sum();
        let subsidy = Amount::from_sat(
            (50 * 100_000_000u64)
                .checked_shr(height / HALVING_INTERVAL)
                .unwrap_or(0),
        );
        // BIP34: the height is the first push of the coinbase script.
        let script_sig = bitcoin::script::Builder::new()
            .push_int(height as i64)
            .push_opcode(OP_0)
            .push_slice(b"lnswarm-regtest")
            .into_script();
        let mut coinbase = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                // BIP141: the witness reserved value.
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: subsidy + fees,
                script_pubkey: script.clone(),
            }],
        };
        let mut txdata = vec![coinbase.clone()];
        txdata.extend(self.mempool.iter().map(|m| m.tx.clone()));
        let prev = &self.blocks.last().expect("genesis").block.header;
        let time = (now_secs() as u32).max(prev.time + 1);
        let mut block = Block {
            header: Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: self.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time,
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        // BIP141 witness commitment in the coinbase's last output.
        let witness_root = block.witness_root().expect("coinbase present");
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        let mut data = PushBytesBuf::from([0xaa, 0x21, 0xa9, 0xed]);
        data.extend_from_slice(commitment.as_byte_array())
            .expect("36 bytes fit a push");
        coinbase.output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return(&data),
        });
        block.txdata[0] = coinbase;
        block.header.merkle_root = block.compute_merkle_root().expect("non-empty block");
        while block.header.validate_pow(block.header.target()).is_err() {
            block.header.nonce += 1;
        }
        block
    }

    /// Appends a block already known to build on the tip.
    fn connect(&mut self, block: Block) {
        let height = self.height() + 1;
        let hash = block.block_hash();
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            let coinbase = tx.is_coinbase();
            if !coinbase {
                for input in &tx.input {
                    self.utxos.remove(&input.previous_output);
                }
            }
            for (vout, txout) in tx.output.iter().enumerate() {
                if txout.script_pubkey.is_op_return() {
                    continue;
                }
                self.utxos.insert(
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        txout: txout.clone(),
                        height,
                        coinbase,
                    },
                );
            }
            self.tx_index.insert(txid, (height, index));
        }
        let chainwork = self.tip_chainwork() + block.header.work();
        self.by_hash.insert(hash, height);
        self.blocks.push(BlockEntry {
            block,
            hash,
            chainwork,
        });
    }

    fn persist_mempool(&mut self) -> Result<(), ChainError> {
        if let Some(store) = &mut self.store {
            let entries: Vec<(&Transaction, u64)> =
                self.mempool.iter().map(|m| (&m.tx, m.time)).collect();
            store.write_mempool(&entries)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::{consensus, transaction::Version as TxVersion};

    use super::*;

    fn spend(prev: OutPoint, value: u64, script: &ScriptBuf) -> Transaction {
        Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: prev,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(value),
                script_pubkey: script.clone(),
            }],
        }
    }

    #[test]
    fn blocks_are_valid_and_rules_hold() {
        let mut chain = Chain::in_memory();
        let script = ScriptBuf::from_bytes(vec![0x51]); // OP_TRUE
        let hashes = chain.mine(101, &script).unwrap();
        assert_eq!(chain.height(), 101);
        let b1 = chain.block_at(1).unwrap().clone();
        assert!(b1.check_merkle_root());
        assert!(b1.check_witness_commitment());
        assert_eq!(b1.block_hash(), hashes[0]);
        let bytes = consensus::serialize(&b1);
        let back: Block = consensus::deserialize(&bytes).unwrap();
        assert_eq!(back.block_hash(), hashes[0]);

        // Immature coinbase is refused.
        let cb101 = OutPoint::new(chain.block_at(101).unwrap().txdata[0].compute_txid(), 0);
        assert!(matches!(
            chain.accept(spend(cb101, 1000, &script)),
            Err(ChainError::PrematureCoinbase(..))
        ));
        // Mature coinbase can be spent, once.
        let cb1 = OutPoint::new(b1.txdata[0].compute_txid(), 0);
        let tx1 = spend(cb1, 49 * 100_000_000, &script);
        chain.accept(tx1.clone()).unwrap();
        let tx2 = spend(cb1, 49 * 100_000_000, &ScriptBuf::from_bytes(vec![0x52]));
        assert!(matches!(
            chain.accept(tx2),
            Err(ChainError::MempoolConflict(_))
        ));
        // Higher fee replaces.
        let tx3 = spend(cb1, 48 * 100_000_000, &ScriptBuf::from_bytes(vec![0x52]));
        chain.accept(tx3.clone()).unwrap();
        assert_eq!(chain.mempool().len(), 1);
        chain.mine(1, &script).unwrap();
        assert!(matches!(
            chain.accept(spend(cb1, 1, &script)),
            Err(ChainError::MissingOrSpent(_))
        ));
        // Spending more than the input.
        let cb2 = OutPoint::new(chain.block_at(2).unwrap().txdata[0].compute_txid(), 0);
        assert!(matches!(
            chain.accept(spend(cb2, 51 * 100_000_000, &script)),
            Err(ChainError::InBelowOut(..))
        ));
    }
}
