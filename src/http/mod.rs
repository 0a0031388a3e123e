//! The HTTP API: routes, per-request tracing and metrics, health and readiness, and the
//! server's start and graceful shutdown.

pub mod acts;
pub mod error;
pub mod journal;
pub mod leads;
mod query;
pub mod subjects;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::pipeline::Pipeline;
use error::ApiError;

/// The largest request body accepted, in bytes: the text limit plus room for the other
/// fields and JSON escapes.
const BODY_LIMIT_BYTES: usize = 128 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub metrics: Option<PrometheusHandle>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leadgate",
        description = "Qualifies chat leads with a local language model"
    ),
    paths(
        leads::create_lead,
        leads::get_lead,
        journal::list_journal,
        subjects::export_subject,
        subjects::erase_subject,
        acts::list_acts,
        acts::get_act
    ),
    components(schemas(
        leads::LeadRequest,
        leads::ContactRequest,
        crate::pipeline::LeadView,
        error::ErrorBody,
        subjects::EraseRequest
    )),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// Adds the API key scheme: `Authorization: Bearer <key>`, or the key in `X-Api-Key`.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityScheme;
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A key from `leadgate keys create`; its role (bot, staff, admin) decides \
                 which endpoints it may use",
            ))
            .build();
        components.add_security_scheme("api_key", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// Builds the router with all routes and layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/leads", post(leads::create_lead))
        .route("/v1/leads/{id}", get(leads::get_lead))
        .route("/v1/journal", get(journal::list_journal))
        .route("/v1/subjects/export", get(subjects::export_subject))
        .route("/v1/subjects/erase", post(subjects::erase_subject))
        .route("/v1/acts", get(acts::list_acts))
        .route("/v1/acts/{id}", get(acts::get_act))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(record_request))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The route pattern only: a raw URI could carry a client's data in its query.
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    route,
                    key_id = tracing::field::Empty,
                    lead_id = tracing::field::Empty,
                    bytes = tracing::field::Empty,
                )
            }),
        )
        .with_state(state)
}

/// Counts requests and records their latency by route and status.
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("endpoint", route), ("method", method), ("status", status)];
    metrics::counter!("leadgate_http_requests_total", &labels).increment(1);
    metrics::histogram!("leadgate_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the model is loaded (it is, once the server listens) and the database responds to a query.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.pipeline.store.clone();
    let db_ok = tokio::task::spawn_blocking(move || store.is_healthy())
        .await
        .unwrap_or(false);
    let body =
        serde_json::json!({ "model": "loaded", "database": if db_ok { "ok" } else { "failed" } });
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::not_found(
            "metrics_disabled",
            "metrics are not enabled in this process",
        )
        .into_response();
    };
    let engine = &state.pipeline.engine;
    let stats = engine.stats();
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    metrics::gauge!("leadgate_engine_queue_depth").set(engine.queue_depth() as f64);
    metrics::counter!("leadgate_engine_requests_total").absolute(load(&stats.started));
    metrics::counter!("leadgate_engine_completed_total").absolute(load(&stats.completed));
    metrics::counter!("leadgate_engine_failed_total").absolute(load(&stats.failed));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept this method; see /openapi.json",
    )
}

/// Resolves when the process receives ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Serves the API on `listener` until a shutdown signal, then waits for accepted leads to
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipeline: Pipeline,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<()> {
    let state = AppState {
        pipeline: pipeline.clone(),
        metrics,
    };
    pipeline.warm_up();
    let resumed = pipeline.resume_unfinished().await?;
    if resumed > 0 {
        tracing::info!(
            leads = resumed,
            "resumed leads a previous run left unfinished"
        );
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutdown requested; finishing accepted leads");
    pipeline.wait_idle().await;
    tracing::info!("all accepted leads finished; stopped");
    Ok(())
}
