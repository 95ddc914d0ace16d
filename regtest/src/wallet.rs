//! The chain's own wallet: one secp256k1 key kept in `wallet.key` (mode 0600), whose
//! P2WPKH address receives coinbases when a caller mines to it, and which pays other
//! addresses (`sendtoaddress`) from its mature coinbases and change, with real
//! signatures.

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use bitcoin::{
    absolute::LockTime,
    ecdsa,
    secp256k1::{Message, Secp256k1, SecretKey},
    sighash::{EcdsaSighashType, SighashCache},
    transaction::Version,
    Address, Amount, CompressedPublicKey, Network, PrivateKey, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness,
};
use rand::RngCore;

use crate::chain::{Chain, ChainError, COINBASE_MATURITY};

/// Fee rate of the wallet's payments, sat/vB.
const FEE_RATE: u64 = 2;
/// Change below this is left to the fee.
const DUST: u64 = 546;

pub struct Wallet {
    key: SecretKey,
    public: CompressedPublicKey,
    address: Address,
}

impl Wallet {
    /// Loads the key from `dir/wallet.key`, creating it on first use.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("wallet.key");
        let key = match fs::read_to_string(&path) {
            Ok(hex_key) => {
                let bytes = hex::decode(hex_key.trim())
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
                SecretKey::from_slice(&bytes)
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = loop {
                    let mut bytes = [0u8; 32];
                    rand::thread_rng().fill_bytes(&mut bytes);
                    if let Ok(k) = SecretKey::from_slice(&bytes) {
                        break k;
                    }
                };
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(hex::encode(key.secret_bytes()).as_bytes())?;
                f.sync_all()?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Self::from_key(key))
    }

    pub fn from_key(key: SecretKey) -> Self {
        let secp = Secp256k1::signing_only();
        let public =
            CompressedPublicKey::from_private_key(&secp, &PrivateKey::new(key, Network::Regtest))
                .expect("compressed key");
        let address = Address::p2wpkh(&public, Network::Regtest);
        Wallet {
            key,
            public,
            address,
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn script(&self) -> ScriptBuf {
        self.address.script_pubkey()
    }

    /// What the wallet can spend now: mature confirmed outputs plus its unconfirmed
    /// change.
    pub fn balance(&self, chain: &Chain) -> Amount {
        self.spendable(chain).iter().map(|(_, o)| o.value).sum()
    }

    fn spendable(&self, chain: &Chain) -> Vec<(bitcoin::OutPoint, TxOut)> {
        let next = chain.height() + 1;
        chain
            .outputs_paying(&self.script())
            .into_iter()
            .filter(|(_, _, coin)| match coin {
                Some(c) => !c.coinbase || next - c.height >= COINBASE_MATURITY,
                None => true,
            })
            .map(|(op, out, _)| (op, out))
            .collect()
    }

    /// Pays `amount` to `to` and puts the transaction in the mempool.
    pub fn send(
        &self,
        chain: &mut Chain,
        to: &Address,
        amount: Amount,
    ) -> Result<Txid, ChainError> {
        let mut coins = self.spendable(chain);
        // Largest first keeps the transaction small.
        coins.sort_by_key(|c| std::cmp::Reverse(c.1.value));
        let mut picked = Vec::new();
        let mut total = Amount::ZERO;
        let fee_for =
            |inputs: usize| Amount::from_sat(FEE_RATE * (11 + 68 * inputs as u64 + 31 * 2));
        for coin in coins {
            if total >= amount + fee_for(picked.len()) {
                break;
            }
            total += coin.1.value;
            picked.push(coin);
        }
        let fee = fee_for(picked.len());
        if picked.is_empty() || total < amount + fee {
            return Err(ChainError::InsufficientFunds);
        }
        let mut output = vec![TxOut {
            value: amount,
            script_pubkey: to.script_pubkey(),
        }];
        let change = total - amount - fee;
        if change.to_sat() >= DUST {
            output.push(TxOut {
                value: change,
                script_pubkey: self.script(),
            });
        }
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: picked
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output,
        };
        let secp = Secp256k1::signing_only();
        let script = self.script();
        let mut witnesses = Vec::with_capacity(picked.len());
        {
            let mut cache = SighashCache::new(&tx);
            for (i, (_, prev)) in picked.iter().enumerate() {
                let sighash = cache
                    .p2wpkh_signature_hash(i, &script, prev.value, EcdsaSighashType::All)
                    .expect("input index in range");
                let msg = Message::from(sighash);
                let signature = ecdsa::Signature {
                    signature: secp.sign_ecdsa(&msg, &self.key),
                    sighash_type: EcdsaSighashType::All,
                };
                witnesses.push(Witness::p2wpkh(&signature, &self.public.0));
            }
        }
        for (input, witness) in tx.input.iter_mut().zip(witnesses) {
            input.witness = witness;
        }
        chain.accept(tx)
    }
}
