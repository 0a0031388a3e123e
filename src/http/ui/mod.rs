//! The staff page at `/ui`: server-rendered HTML in Russian that works without
//! JavaScript. Staff sign in with their key, then approve, edit or reject drafted
//! replies; admins also manage the response templates and consent texts.
//!
//! Every page that shows a lead's personal data writes a journal entry through
//! `review::get_draft`. Pages are sent with `Cache-Control: no-store` and a content
//! security policy that allows no scripts.

mod consent;
mod drafts;
mod session;
mod templates;

use std::sync::LazyLock;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::auth::{Principal, Role};
use crate::draft::templates::TemplateError;
use crate::review::ReviewError;
use crate::store::{StoreError, keys, queries, sessions};
use session::{LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, SignedIn};

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    let pages = [
        ("base.html", include_str!("pages/base.html")),
        ("login.html", include_str!("pages/login.html")),
        ("drafts.html", include_str!("pages/drafts.html")),
        ("message.html", include_str!("pages/message.html")),
        ("templates.html", include_str!("pages/templates.html")),
        ("template.html", include_str!("pages/template.html")),
        ("consent.html", include_str!("pages/consent.html")),
    ];
    for (name, source) in pages {
        environment
            .add_template(name, source)
            .expect("the staff page templates in src/http/ui/pages are valid");
    }
    environment
});

/// Returns the routes of the staff page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/drafts") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/drafts", get(drafts::queue))
        .route("/ui/drafts/{id}", get(drafts::one))
        .route("/ui/drafts/{id}/approve", post(drafts::approve))
        .route("/ui/drafts/{id}/reject", post(drafts::reject))
        .route("/ui/templates", get(templates::list))
        .route("/ui/templates/{kind}", get(templates::show))
        .route("/ui/templates/{kind}/save", post(templates::save))
        .route("/ui/templates/{kind}/activate", post(templates::activate))
        .route("/ui/templates/{kind}/rollback", post(templates::rollback))
        .route("/ui/consent", get(consent::show))
        .route("/ui/consent/activate", post(consent::activate))
}

/// The signed-in key as the page header shows it.
#[derive(Serialize)]
struct Viewer {
    name: String,
    role: &'static str,
    admin: bool,
}

fn viewer(principal: &Principal) -> Viewer {
    Viewer {
        name: principal.name.clone(),
        role: principal.role.as_str(),
        admin: principal.role == Role::Admin,
    }
}

/// Renders page `name` with `context` and the headers every staff page gets.
fn render(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    let html = PAGES
        .get_template(name)
        .and_then(|template| template.render(context));
    let html = match html {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(page = name, %error, "a staff page failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A failure shown as a page. The message is Russian text for staff and never contains a
/// lead's data.
#[derive(Debug)]
pub struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn internal() -> UiError {
        UiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Сервер не смог выполнить запрос. Подробности в журнале сервера.",
        )
    }

    fn bad_form() -> UiError {
        UiError::new(
            StatusCode::BAD_REQUEST,
            "Форма заполнена неверно. Обновите страницу и повторите.",
        )
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let context = minijinja::context! {
            heading => "Не получилось",
            message => self.message,
            back => "/ui/drafts",
        };
        render(self.status, "message.html", context)
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> UiError {
        tracing::error!(%error, "a staff page request failed");
        UiError::internal()
    }
}

impl From<ReviewError> for UiError {
    fn from(error: ReviewError) -> UiError {
        match error {
            ReviewError::Store(error) => UiError::from(error),
            ReviewError::NotFound { .. } => {
                UiError::new(StatusCode::NOT_FOUND, "Такого черновика нет.")
            }
            ReviewError::AlreadyReviewed { .. } => UiError::new(
                StatusCode::CONFLICT,
                "Этот черновик уже проверен: его одобрили или отклонили.",
            ),
            ReviewError::Empty { .. } => UiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Текст пустой: заполните поле.",
            ),
            ReviewError::TooLong { .. } => UiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "Текст длиннее {} байт: сократите его.",
                    crate::review::MAX_TEXT_BYTES
                ),
            ),
        }
    }
}

impl From<TemplateError> for UiError {
    fn from(error: TemplateError) -> UiError {
        // Template errors name kinds, services and variables, never a lead's data.
        UiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
    }
}

/// Unpacks a submitted form, or returns a 400 page.
fn form<T>(form: Result<Form<T>, FormRejection>) -> Result<T, UiError> {
    form.map(|Form(value)| value)
        .map_err(|_| UiError::bad_form())
}

async fn login_page() -> Result<Response, UiError> {
    login_form(StatusCode::OK, None)
}

fn login_form(status: StatusCode, error: Option<&str>) -> Result<Response, UiError> {
    let (csrf, cookie) = session::login_form_token()?;
    let context = minijinja::context! { csrf => csrf, error => error };
    let mut response = render(status, "login.html", context);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    key: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    submitted: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    session::check_token(expected, &submitted.csrf)?;
    let key = submitted.key.trim().to_string();
    let store = state.pipeline.store.clone();

    let principal = store.call(move |conn| keys::find_key(conn, &key)).await?;
    let Some(principal) = principal else {
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("Ключ не найден или отозван."),
        );
    };
    if principal.role == Role::Bot {
        return login_form(
            StatusCode::FORBIDDEN,
            Some("Ключ с ролью bot не подходит для входа: нужен ключ staff или admin."),
        );
    }

    let token = session::random_token()?;
    let csrf = session::random_token()?;
    let key_id = principal.key_id;
    let stored = token.clone();
    store
        .call(move |conn| {
            sessions::create(conn, &stored, key_id, &csrf, SESSION_SECONDS)?;
            queries::journal_by(
                conn,
                "ui_signed_in",
                None,
                Some(key_id),
                &serde_json::json!({}),
            )
        })
        .await?;
    tracing::info!(key_id, "signed in to the staff page");

    let mut response = Redirect::to("/ui/drafts").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, &token, SESSION_SECONDS),
    );
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_CSRF_COOKIE, "", 0),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    signed_in: SignedIn,
    submitted: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    signed_in.check_csrf(&form(submitted)?.csrf)?;
    let token = signed_in.token.clone();
    state
        .pipeline
        .store
        .call(move |conn| sessions::delete(conn, &token))
        .await?;
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, "", 0),
    );
    Ok(response)
}
