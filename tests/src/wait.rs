//! Polling for conditions a user would observe, with a deadline that fails the test
//! with a message instead of hanging it.

use std::{future::Future, time::Duration};

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
