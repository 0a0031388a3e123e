//! The HTTP API: routes, per-request tracing and metrics, health and readiness, and the
//! server's start and graceful shutdown.

pub mod acts;
pub mod body;
pub mod consent_texts;
pub mod consents;
pub mod drafts;
pub mod error;
pub mod journal;
pub mod leads;
mod query;
pub mod rate_limit;
pub mod server;
pub mod subjects;
pub mod templates;
pub mod tls;
pub mod ui;

use std::sync::Arc;
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
use crate::webhook::Webhook;
use error::ApiError;
use rate_limit::RateLimiter;
use server::ConnectionLimits;

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub metrics: Option<PrometheusHandle>,
    pub rate_limiter: Arc<RateLimiter>,
    /// The reply webhook task, when a webhook is configured.
    pub webhook: Option<Webhook>,
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
        consents::record_consent,
        consents::verify_consents,
        consent_texts::list_texts,
        consent_texts::add_text,
        consent_texts::get_text,
        consent_texts::update_text,
        consent_texts::activate_text,
        drafts::list_drafts,
        drafts::get_draft,
        drafts::approve,
        drafts::reject,
        drafts::list_replies,
        templates::list_keys,
        templates::list_versions,
        templates::save_version,
        templates::get_version,
        templates::activate,
        templates::rollback,
        templates::diff,
        journal::list_journal,
        subjects::export_subject,
        subjects::erase_subject,
        acts::list_acts,
        acts::get_act
    ),
    components(schemas(
        leads::LeadRequest,
        leads::ContactRequest,
        leads::LeadConsentRequest,
        crate::pipeline::LeadView,
        consents::ConsentRequest,
        consents::SubjectRequest,
        consents::ConsentEventView,
        crate::consent::ConsentTextInput,
        crate::store::consent::ConsentText,
        crate::store::consent::ChainReport,
        crate::store::consent::ChainError,
        crate::review::DraftView,
        crate::review::ReplyView,
        drafts::ApproveRequest,
        drafts::RejectRequest,
        templates::SaveRequest,
        error::ErrorBody,
        error::ErrorBody,
        subjects::EraseRequest
    )),
    modifiers(&SecuritySchemes, &CommonErrors)
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

/// Adds to every `/v1/` operation the error responses that any keyed request may get, where
/// its own description does not list them.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        const COMMON: [(&str, &str); 5] = [
            (
                "400",
                "An invalid path or query parameter, or a malformed body",
            ),
            ("401", "No key, or an unknown or revoked one"),
            ("403", "The key's role may not use this endpoint"),
            ("422", "A value that breaks a rule of the request"),
            (
                "429",
                "The key is over its rate limit; retry after `Retry-After` seconds",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (code, description) in COMMON {
                    let responses = &mut operation.responses.responses;
                    responses.entry(code.to_string()).or_insert_with(|| {
                        let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/json", body)
                                .build(),
                        )
                    });
                }
            }
        }
    }
}

/// Builds the router with all routes and layers.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.pipeline.settings.limits.max_body_bytes;
    Router::new()
        .route("/v1/leads", post(leads::create_lead))
        .route("/v1/leads/{id}", get(leads::get_lead))
        .route("/v1/consents", post(consents::record_consent))
        .route("/v1/consents/verify", get(consents::verify_consents))
        .route(
            "/v1/consent-texts",
            get(consent_texts::list_texts).post(consent_texts::add_text),
        )
        .route(
            "/v1/consent-texts/{purpose}/{version}",
            get(consent_texts::get_text).put(consent_texts::update_text),
        )
        .route(
            "/v1/consent-texts/{purpose}/{version}/activate",
            post(consent_texts::activate_text),
        )
        .route("/v1/drafts", get(drafts::list_drafts))
        .route("/v1/drafts/{id}", get(drafts::get_draft))
        .route("/v1/drafts/{id}/approve", post(drafts::approve))
        .route("/v1/drafts/{id}/reject", post(drafts::reject))
        .route("/v1/replies", get(drafts::list_replies))
        .route("/v1/templates", get(templates::list_keys))
        .route(
            "/v1/templates/{kind}/versions",
            get(templates::list_versions).post(templates::save_version),
        )
        .route(
            "/v1/templates/{kind}/versions/{version}",
            get(templates::get_version),
        )
        .route(
            "/v1/templates/{kind}/versions/{version}/activate",
            post(templates::activate),
        )
        .route("/v1/templates/{kind}/rollback", post(templates::rollback))
        .route("/v1/templates/{kind}/diff", get(templates::diff))
        .merge(ui::routes())
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
        .layer(DefaultBodyLimit::max(max_body_bytes))
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

/// Serves the API on `listener`, over TLS when `tls` is given, until a shutdown signal,
/// then waits for open requests and accepted leads to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipeline: Pipeline,
    metrics: Option<PrometheusHandle>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    webhook_token: Option<String>,
) -> anyhow::Result<()> {
    let settings = pipeline.settings.clone();
    let limits = &settings.limits;
    let webhook = match (&settings.webhook, webhook_token) {
        (Some(webhook), Some(token)) => Some(Webhook::start(
            pipeline.store.clone(),
            webhook.clone(),
            token,
        )),
        _ => None,
    };
    let state = AppState {
        pipeline: pipeline.clone(),
        metrics,
        rate_limiter: Arc::new(RateLimiter::new(limits.rate_per_minute, limits.rate_burst)),
        webhook,
    };
    pipeline.warm_up();
    let resumed = pipeline.resume_unfinished().await?;
    if resumed > 0 {
        tracing::info!(
            leads = resumed,
            "resumed leads a previous run left unfinished"
        );
    }
    let connection_limits = ConnectionLimits {
        max_header_bytes: limits.max_header_bytes,
        request_timeout: settings.request_timeout(),
    };
    // A request may read its body and then wait for the model before it responds.
    let drain = settings.request_timeout() + settings.wait();
    server::run(
        listener,
        router(state),
        tls,
        connection_limits,
        shutdown_signal(),
        drain,
    )
    .await;
    tracing::info!("finishing accepted leads");
    pipeline.wait_idle().await;
    tracing::info!("all accepted leads finished; stopped");
    Ok(())
}
