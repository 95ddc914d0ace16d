//! The chain on disk: `blocks.dat` (each block consensus-encoded behind a 4-byte
//! little-endian length, appended and fsynced as it is mined) and `mempool.dat`
//! (the mempool, rewritten atomically on every change). A block file whose last
//! record was cut short by a crash is trimmed back to its last whole block.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use bitcoin::{consensus, Block, Transaction};

pub struct Store {
    blocks: File,
    mempool_path: PathBuf,
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// A record's body and the `extra` bytes that follow it.
type Record<'a> = (&'a [u8], &'a [u8]);

/// Splits `bytes` into length-prefixed records; returns them and the length of the
/// whole records.
fn records(bytes: &[u8], extra: usize) -> (Vec<Record<'_>>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let end = pos + 4 + len + extra;
        if end > bytes.len() {
            break;
        }
        out.push((&bytes[pos + 4..pos + 4 + len], &bytes[pos + 4 + len..end]));
        pos = end;
    }
    (out, pos)
}

impl Store {
    /// Opens the store in `dir`, returning the blocks after genesis and the mempool
    /// (with each transaction's entry time).
    #[allow(clippy::type_complexity)]
    pub fn open(dir: &Path) -> io::Result<(Store, Vec<Block>, Vec<(Transaction, u64)>)> {
        fs::create_dir_all(dir)?;
        let blocks_path = dir.join("blocks.dat");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&blocks_path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (recs, whole) = records(&bytes, 0);
        let mut blocks = Vec::with_capacity(recs.len());
        for (body, _) in recs {
            blocks.push(
                consensus::deserialize::<Block>(body).map_err(|e| decode_err("blocks.dat", e))?,
            );
        }
        if whole < bytes.len() {
            tracing::warn!(
                dropped_bytes = bytes.len() - whole,
                "blocks.dat ends in a partial block; trimming it"
            );
            file.set_len(whole as u64)?;
        }

        let mempool_path = dir.join("mempool.dat");
        let mut mempool = Vec::new();
        if let Ok(bytes) = fs::read(&mempool_path) {
            let (recs, _) = records(&bytes, 8);
            for (body, time) in recs {
                let tx = consensus::deserialize::<Transaction>(body)
                    .map_err(|e| decode_err("mempool.dat", e))?;
                mempool.push((tx, u64::from_le_bytes(time.try_into().unwrap())));
            }
        }
        Ok((
            Store {
                blocks: file,
                mempool_path,
            },
            blocks,
            mempool,
        ))
    }

    pub fn append_block(&mut self, block: &Block) -> io::Result<()> {
        let body = consensus::serialize(block);
        let mut rec = Vec::with_capacity(body.len() + 4);
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&body);
        self.blocks.write_all(&rec)?;
        self.blocks.sync_data()
    }

    pub fn write_mempool(&mut self, txs: &[(&Transaction, u64)]) -> io::Result<()> {
        let mut buf = Vec::new();
        for (tx, time) in txs {
            let body = consensus::serialize(*tx);
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&body);
            buf.extend_from_slice(&time.to_le_bytes());
        }
        let tmp = self.mempool_path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        fs::rename(&tmp, &self.mempool_path)
    }
}
