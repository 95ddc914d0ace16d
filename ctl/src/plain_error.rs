//! Errors as a person reads them. A gRPC status prints as "code: 'Some requested
//! entity was not found', message: …" and a refused connection as a chain of
//! "transport error"s; the user needs what was refused and what to check.

use std::{error::Error as StdError, io};

use tonic::{Code, Status};

/// What went wrong, in one line, with a hint where one helps.
pub fn describe(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        if let Some(status) = cause.downcast_ref::<Status>() {
            parts.push(status_text(status));
            return join(parts);
        }
        if is_refused(cause) {
            parts.push(
                "nothing answers there: is the manager running, and is the address right? \
                 (--manager / LNSWARM_MANAGER)"
                    .into(),
            );
            return join(parts);
        }
        let text = cause.to_string();
        if text.contains("tls handshake eof") || text.contains("HandshakeFailure") {
            parts.push(
                "the TLS handshake failed: the manager did not accept this credential \
                 (is it from this cluster, and not expired? --credentials / LNSWARM_CREDENTIALS)"
                    .into(),
            );
            return join(parts);
        }
        parts.push(text);
    }
    join(parts)
}

/// The causes in order, each without the text of the next that it repeats
/// ("reading X: No such file: No such file").
fn join(parts: Vec<String>) -> String {
    let mut out: Vec<String> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let mut own = part.as_str();
        if let Some(next) = parts.get(i + 1) {
            if let Some(stripped) = own.strip_suffix(next.as_str()) {
                own = stripped.trim_end_matches([':', ' ']);
            }
        }
        if !own.is_empty() && out.last().map(String::as_str) != Some(own) {
            out.push(own.to_string());
        }
    }
    out.join(": ")
}

/// This cause itself (not one under it) is a refused connection.
fn is_refused(cause: &(dyn StdError + 'static)) -> bool {
    let io_refused = cause
        .downcast_ref::<io::Error>()
        .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused);
    io_refused || cause.to_string().contains("Connection refused")
}

fn status_text(s: &Status) -> String {
    let msg = s.message();
    match s.code() {
        Code::NotFound => format!("not found: {msg}"),
        Code::InvalidArgument => format!("refused: {msg}"),
        Code::AlreadyExists => format!("already exists: {msg}"),
        Code::FailedPrecondition | Code::OutOfRange => msg.to_string(),
        Code::PermissionDenied => {
            format!("not allowed: {msg} (the credential in use does not give this right)")
        }
        Code::Unauthenticated => format!(
            "not authenticated: {msg} (is the credential from this cluster, and not expired?)"
        ),
        Code::Unavailable => format!(
            "the cluster cannot answer now: {msg} (is a quorum of managers running? try again)"
        ),
        Code::DeadlineExceeded => format!("no answer in time: {msg}"),
        Code::Aborted => format!("a concurrent change got there first: {msg}; try again"),
        Code::ResourceExhausted => format!("too much at once: {msg}; slow down and try again"),
        Code::Unimplemented => format!("this cluster does not offer that: {msg}"),
        Code::Cancelled => format!("cancelled: {msg}"),
        Code::Ok => msg.to_string(),
        Code::Unknown | Code::Internal | Code::DataLoss => {
            format!("the manager failed: {msg} (its log says more)")
        }
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn a_status_reads_as_what_was_refused() {
        let e = anyhow::Error::from(Status::not_found("no agent \"x\"")).context("inspecting");
        assert_eq!(describe(&e), "inspecting: not found: no agent \"x\"");
    }

    #[test]
    fn a_refused_connection_says_what_to_check() {
        let io = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = anyhow::Error::from(io).context("connecting to manager 127.0.0.1:1");
        let text = describe(&e);
        assert!(text.starts_with("connecting to manager 127.0.0.1:1: nothing answers"));
        assert!(text.contains("LNSWARM_MANAGER"), "{text}");
    }

    #[test]
    fn a_repeated_cause_is_said_once() {
        let io = io::Error::from(io::ErrorKind::NotFound);
        let said = io.to_string();
        let e = Err::<(), _>(io)
            .with_context(|| format!("reading /x/cert.pem: {said}"))
            .unwrap_err();
        assert_eq!(describe(&e), format!("reading /x/cert.pem: {said}"));
    }
}
