//! Printing results: aligned text for people, `--format json` for scripts.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Prints rows under a header with columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints a JSON value on one line per document.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

/// Prints one object: as JSON, or as FIELD / VALUE rows (strings unquoted).
pub fn print_object(format: Format, value: &serde_json::Value) {
    match format {
        Format::Json => print_json(value),
        Format::Table => {
            let rows: Vec<Vec<String>> = value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let cell = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    vec![k.clone(), cell]
                })
                .collect();
            print_table(&["FIELD", "VALUE"], &rows)
        }
    }
}

/// A Unix time (seconds) as RFC 3339 UTC, as people read expiries.
pub fn unix_time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A stored time (Unix milliseconds) as a person reads it: UTC, and how long ago
/// or how far ahead; empty for 0 (never set).
pub fn ms_time(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let at = unix_time(ms / 1000);
    let span = |d: i64| humantime::format_duration(std::time::Duration::from_secs(d as u64 / 1000));
    match now - ms {
        d if d >= 1000 => format!("{at} ({} ago)", span(d)),
        d if d <= -1000 => format!("{at} (in {})", span(-d)),
        _ => format!("{at} (now)"),
    }
}

/// When a certificate (PEM) expires, as [`unix_time`]; empty if it cannot be read.
pub fn cert_expiry(cert_pem: &str) -> String {
    lnswarm_common::pki::validity_of(cert_pem)
        .map(|(_, not_after)| unix_time(not_after))
        .unwrap_or_default()
}

#[cfg(test)]
mod time_tests {
    use super::ms_time;

    #[test]
    fn stored_times_read_as_dates_and_ages() {
        assert_eq!(ms_time(0), "", "never set");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let past = ms_time(now - 125_000);
        assert!(past.ends_with("(2m 5s ago)"), "{past}");
        assert!(
            past.starts_with("20") && past.contains('T'),
            "RFC 3339: {past}"
        );
        assert!(ms_time(now + 3_600_500).contains("(in 1h"), "a time ahead");
    }
}
