//! The template pages for admins: the keys, one key's versions with the difference between
//! two of them, and the forms to save, activate and roll back.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::session::SignedIn;
use super::{UiError, form, render, viewer};
use crate::auth::Role;
use crate::draft::templates::{self as checks, VARIABLES};
use crate::http::AppState;
use crate::store::templates::{self as versions, Activation};
use crate::store::{Author, StoreError};

const ADMINS: [Role; 1] = [Role::Admin];

#[derive(Deserialize)]
pub struct KeyQuery {
    service: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

/// One line of a difference, with the CSS class that colours it.
#[derive(Serialize)]
struct DiffLine {
    class: &'static str,
    text: String,
}

fn service_of(
    state: &AppState,
    kind: &str,
    service: Option<String>,
) -> Result<Option<String>, UiError> {
    let service = service.filter(|s| !s.is_empty());
    checks::check_key(kind, service.as_deref(), &state.pipeline.settings)?;
    Ok(service)
}

/// Builds the query string that keeps the service on the page's links and forms.
fn service_query(service: Option<&str>) -> String {
    service.map_or_else(String::new, |s| format!("?service={s}"))
}

async fn store_call<R: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&mut rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, UiError> {
    Ok(state.pipeline.store.call(work).await?)
}

/// Lists the template keys.
pub async fn list(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response, UiError> {
    signed_in.require(&ADMINS)?;
    let keys = store_call(&state, |conn| versions::list_keys(conn)).await?;
    let context = minijinja::context! {
        principal => viewer(&signed_in.principal),
        csrf => signed_in.csrf_token,
        keys => keys,
    };
    Ok(render(StatusCode::OK, "templates.html", context))
}

/// The parts of a key's page besides its versions.
struct KeyPage<'a> {
    kind: &'a str,
    service: Option<&'a str>,
    diff: Option<(i64, i64)>,
    /// A body the form keeps after a rejected save.
    body: Option<String>,
    error: Option<String>,
    notice: Option<&'a str>,
}

async fn key_page(
    state: &AppState,
    signed_in: &SignedIn,
    status: StatusCode,
    page: KeyPage<'_>,
) -> Result<Response, UiError> {
    let (kind, service) = (page.kind.to_string(), page.service.map(str::to_string));
    let list = store_call(state, move |conn| {
        versions::list_versions(conn, &kind, service.as_deref())
    })
    .await?;
    let diff = page.diff.and_then(|(from, to)| {
        let old = list.iter().find(|v| v.version == from)?;
        let new = list.iter().find(|v| v.version == to)?;
        let text = checks::diff(&old.body, &new.body, &format!("v{from}"), &format!("v{to}"));
        let lines: Vec<DiffLine> = text
            .lines()
            .skip(2)
            .map(|line| DiffLine {
                class: match line.chars().next() {
                    Some('+') => "add",
                    Some('-') => "del",
                    _ => "same",
                },
                text: line.to_string(),
            })
            .collect();
        Some(lines)
    });
    let draft_body = page.body.unwrap_or_else(|| {
        list.iter()
            .find(|v| v.active)
            .or(list.last())
            .map(|v| v.body.clone())
            .unwrap_or_default()
    });
    let context = minijinja::context! {
        principal => viewer(&signed_in.principal),
        csrf => signed_in.csrf_token,
        kind => page.kind,
        service => page.service,
        query => service_query(page.service),
        versions => list,
        diff => diff,
        diff_from => page.diff.map(|d| d.0),
        diff_to => page.diff.map(|d| d.1),
        draft_body => draft_body,
        variables => VARIABLES,
        error => page.error,
        notice => page.notice,
    };
    Ok(render(status, "template.html", context))
}

/// Shows one key's versions, with the difference between `from` and `to` when given.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(kind): Path<String>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UiError> {
    signed_in.require(&ADMINS)?;
    let Query(query) = query.map_err(|_| UiError::bad_form())?;
    let service = service_of(&state, &kind, query.service)?;
    let page = KeyPage {
        kind: &kind,
        service: service.as_deref(),
        diff: query.from.zip(query.to),
        body: None,
        error: None,
        notice: None,
    };
    key_page(&state, &signed_in, StatusCode::OK, page).await
}

#[derive(Deserialize)]
pub struct ServiceQuery {
    service: Option<String>,
}

#[derive(Deserialize)]
pub struct SaveForm {
    csrf: String,
    body: String,
    activate: Option<String>,
}

/// Saves a new version; a rejected body is shown again with the reason.
pub async fn save(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(kind): Path<String>,
    Query(query): Query<ServiceQuery>,
    submitted: Result<Form<SaveForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    signed_in.check_csrf(&submitted.csrf)?;
    signed_in.require(&ADMINS)?;
    let service = service_of(&state, &kind, query.service)?;
    // Browsers send textarea lines with CRLF.
    let body = submitted.body.replace("\r\n", "\n");
    if let Err(error) = checks::check_body(&body) {
        let page = KeyPage {
            kind: &kind,
            service: service.as_deref(),
            diff: None,
            body: Some(body),
            error: Some(error.to_string()),
            notice: None,
        };
        return key_page(&state, &signed_in, StatusCode::UNPROCESSABLE_ENTITY, page).await;
    }
    let activate = submitted.activate.is_some();
    let (k, s, author) = (
        kind.clone(),
        service.clone(),
        Author::from(&signed_in.principal),
    );
    store_call(&state, move |conn| {
        versions::save_version(conn, &k, s.as_deref(), &body, activate, &author)
    })
    .await?;
    Ok(Redirect::to(&format!(
        "/ui/templates/{kind}{}",
        service_query(service.as_deref())
    ))
    .into_response())
}

#[derive(Deserialize)]
pub struct ActivateForm {
    csrf: String,
    version: i64,
}

/// Makes the version from the form the active one.
pub async fn activate(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(kind): Path<String>,
    Query(query): Query<ServiceQuery>,
    submitted: Result<Form<ActivateForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    signed_in.check_csrf(&submitted.csrf)?;
    signed_in.require(&ADMINS)?;
    let service = service_of(&state, &kind, query.service)?;
    let (k, s, author, version) = (
        kind.clone(),
        service.clone(),
        Author::from(&signed_in.principal),
        submitted.version,
    );
    let activation = store_call(&state, move |conn| {
        versions::activate(conn, &k, s.as_deref(), version, &author)
    })
    .await?;
    finish(&kind, service.as_deref(), activation, "Такой версии нет.")
}

/// Makes the newest version older than the active one active again.
pub async fn rollback(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(kind): Path<String>,
    Query(query): Query<ServiceQuery>,
    submitted: Result<Form<super::CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    signed_in.check_csrf(&submitted.csrf)?;
    signed_in.require(&ADMINS)?;
    let service = service_of(&state, &kind, query.service)?;
    let (k, s, author) = (
        kind.clone(),
        service.clone(),
        Author::from(&signed_in.principal),
    );
    let activation = store_call(&state, move |conn| {
        versions::rollback(conn, &k, s.as_deref(), &author)
    })
    .await?;
    finish(
        &kind,
        service.as_deref(),
        activation,
        "Более старой версии нет.",
    )
}

fn finish(
    kind: &str,
    service: Option<&str>,
    activation: Activation,
    missing: &str,
) -> Result<Response, UiError> {
    match activation {
        Activation::Done { .. } => Ok(Redirect::to(&format!(
            "/ui/templates/{kind}{}",
            service_query(service)
        ))
        .into_response()),
        Activation::NoSuchVersion => Err(UiError::new(StatusCode::CONFLICT, missing)),
    }
}
