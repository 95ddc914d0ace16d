//! Just enough of a JSON-RPC client to drive the regtest chain from the demo: mine
//! blocks and pay an address.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct RegtestRpc {
    pub addr: String,
    pub user: String,
    pub password: String,
}

impl RegtestRpc {
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        use base64::Engine;
        let body =
            json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.addr,
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password)),
            body.len(),
            body
        );
        let mut stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connecting to the regtest chain at {}", self.addr))?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let (_, body) = text
            .split_once("\r\n\r\n")
            .context("malformed HTTP response")?;
        let v: Value = serde_json::from_str(body.trim()).context("malformed JSON-RPC response")?;
        if !v["error"].is_null() {
            bail!("{method}: {}", v["error"]);
        }
        Ok(v["result"].clone())
    }

    /// Mines `n` blocks to the chain's own wallet.
    pub async fn mine(&self, n: u32) -> Result<()> {
        let addr = self.call("getnewaddress", json!([])).await?;
        self.call("generatetoaddress", json!([n, addr])).await?;
        Ok(())
    }
}
