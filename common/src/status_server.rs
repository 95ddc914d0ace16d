//! A plain-HTTP status endpoint for probes and scrapers that speak neither TLS nor
//! gRPC (systemd, load balancers, Kubernetes, Prometheus, `curl`): `GET /healthz`
//! answers 200 while the process is healthy and 503 when it is not, with a one-line
//! JSON body that says why; `GET /metrics` answers the Prometheus text format. It
//! carries no owner data and needs no certificate, so bind it to a private address.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Reports the process's health: whether it is healthy, and the details.
pub type HealthFn = Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>;
/// Renders the process's metrics in the Prometheus text format (may read a store:
/// it runs on the blocking pool).
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoints {
    pub health: HealthFn,
    pub metrics: MetricsFn,
}

/// Serves `/healthz` and `/metrics` on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, endpoints: Endpoints, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let endpoints = endpoints.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, endpoints.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    endpoints: Endpoints,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => {
            let (healthy, details) = (endpoints.health)();
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", format!("{details}\n"))
        }
        "/metrics" => {
            let metrics = endpoints.metrics.clone();
            match tokio::task::spawn_blocking(move || metrics()).await {
                Ok(text) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "rendering the metrics failed\n".into(),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "/healthz and /metrics are served here\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    Ok(response)
}
