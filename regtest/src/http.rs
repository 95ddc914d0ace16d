//! A small HTTP/1.1 server for JSON-RPC with basic auth, enough for bitcoind
//! clients: keep-alive connections, `Content-Length` bodies, single and batch
//! requests. Errors are answered as bitcoind does: HTTP 500 (404 for an unknown
//! method) with a JSON-RPC error object in the body; a wrong password gets 401.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{
        AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
        BufReader,
    },
    net::TcpListener,
};

use crate::rpc::Regtest;

const MAX_BODY: usize = 32 * 1024 * 1024;
/// The longest request or header line read; a longer one ends the connection.
const MAX_LINE: u64 = 16 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// `Basic base64(user:password)`, the header value a client must send.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, regtest: Arc<Regtest>, auth: String) {
    let auth = Arc::new(auth);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let regtest = regtest.clone();
                let auth = auth.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    if let Err(e) = connection(read, write, &regtest, &auth).await {
                        tracing::debug!(%peer, error = %e, "RPC connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the requests read from `read` until it ends, answering on `write`.
async fn connection(
    read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    regtest: &Regtest,
    auth: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader, &mut line))
            .await
            .map_err(|_| std::io::Error::other("idle"))??;
        if n == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut content_length = 0usize;
        let mut authorized = false;
        let mut close = line.contains("HTTP/1.0");
        loop {
            let mut h = String::new();
            if read_line(&mut reader, &mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    content_length = value
                        .parse()
                        .map_err(|_| std::io::Error::other("bad Content-Length"))?
                }
                "authorization" => authorized = value == auth,
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if content_length > MAX_BODY {
            respond(&mut write, 413, "{}", true).await?;
            return Ok(());
        }
        // Grown as the bytes arrive: a Content-Length alone reserves nothing.
        let mut body = Vec::new();
        (&mut reader)
            .take(content_length as u64)
            .read_to_end(&mut body)
            .await?;
        if body.len() < content_length {
            return Ok(());
        }
        if !authorized {
            respond(&mut write, 401, "{\"error\":\"unauthorized\"}", close).await?;
            if close {
                return Ok(());
            }
            continue;
        }
        let (status, reply) = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(calls)) => {
                let replies: Vec<Value> = calls.iter().map(|c| handle(regtest, c).1).collect();
                (200, Value::Array(replies))
            }
            Ok(call) => handle(regtest, &call),
            Err(e) => (
                500,
                json!({"result": null, "error": {"code": -32700, "message": format!("Parse error: {e}")}, "id": null}),
            ),
        };
        respond(&mut write, status, &reply.to_string(), close).await?;
        if close {
            return Ok(());
        }
    }
}

fn handle(regtest: &Regtest, call: &Value) -> (u16, Value) {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let method = call.get("method").and_then(Value::as_str).unwrap_or("");
    let params: Vec<Value> = match call.get("params") {
        Some(Value::Array(p)) => p.clone(),
        _ => Vec::new(),
    };
    tracing::debug!(method, "rpc");
    match regtest.call(method, &params) {
        Ok(result) => (200, json!({"result": result, "error": null, "id": id})),
        Err(e) => {
            let status = if e.code == -32601 { 404 } else { 500 };
            (
                status,
                json!({"result": null, "error": {"code": e.code, "message": e.message}, "id": id}),
            )
        }
    }
}

/// One line of at most [`MAX_LINE`] bytes into `line`; an error if it is longer.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut String,
) -> std::io::Result<usize> {
    let n = reader.take(MAX_LINE).read_line(line).await?;
    if n as u64 == MAX_LINE && !line.ends_with('\n') {
        return Err(std::io::Error::other("line too long"));
    }
    Ok(n)
}

async fn respond(
    w: &mut (impl AsyncWrite + Unpin),
    status: u16,
    body: &str,
    close: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    };
    let extra = if status == 401 {
        "WWW-Authenticate: Basic realm=\"jsonrpc\"\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: {}\r\n\r\n",
        body.len(),
        if close { "close" } else { "keep-alive" }
    );
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body.as_bytes());
    w.write_all(&buf).await?;
    w.flush().await
}

#[cfg(test)]
#[path = "http_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_rfc7617() {
        assert_eq!(
            super::basic_auth("user", "password"),
            "Basic dXNlcjpwYXNzd29yZA=="
        );
    }
}
