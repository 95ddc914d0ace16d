//! Which URIs a webhook may POST to: https anywhere, or plain http to a loopback
//! address when the cluster allows it (development). Checked when a webhook is added,
//! so that the deliverer never meets a URI it should not call.

use reqwest::Url;

/// Longest URI accepted.
pub const MAX_URI: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadUri(pub String);

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `uri` parsed, if a webhook may use it.
pub fn check(uri: &str, loopback_http: bool) -> Result<Url, BadUri> {
    if uri.len() > MAX_URI {
        return Err(BadUri(format!(
            "the URI is longer than {MAX_URI} characters"
        )));
    }
    let url = Url::parse(uri).map_err(|e| BadUri(format!("not a URI: {e}")))?;
    if url.host().is_none() {
        return Err(BadUri("the URI has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BadUri(
            "the URI carries credentials; webhooks are authenticated by their signature".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(BadUri("the URI has a fragment (#...)".into()));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback_http && is_loopback(&url) => Ok(url),
        "http" if loopback_http => Err(BadUri(
            "plain http is allowed only to a loopback address; use https".into(),
        )),
        _ => Err(BadUri("the URI must be https".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_accepted_and_plain_http_only_to_loopback_when_allowed() {
        assert!(check("https://example.com/hook?x=1", false).is_ok());
        assert!(check("http://127.0.0.1:8080/hook", false).is_err());
        assert!(check("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check("http://[::1]:8080/hook", true).is_ok());
        assert!(check("http://localhost/hook", true).is_ok());
        assert!(check("http://example.com/hook", true).is_err());
        assert!(check("ftp://example.com/hook", true).is_err());
    }

    #[test]
    fn credentials_fragments_garbage_and_long_uris_are_refused() {
        assert!(check("https://user:pw@example.com/", false).is_err());
        assert!(check("https://example.com/#x", false).is_err());
        assert!(check("not a uri", false).is_err());
        assert!(check("", false).is_err());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URI));
        assert!(check(&long, false).is_err());
    }
}
