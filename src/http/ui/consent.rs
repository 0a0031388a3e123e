//! The consent page for admins: the consent texts with their versions, and the result of
//! verifying the consent log's hash chain.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::SignedIn;
use super::{UiError, form, render, viewer};
use crate::auth::Role;
use crate::http::AppState;
use crate::store::{StoreError, consent};

/// Shows the consent texts and verifies the consent log.
pub async fn show(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response, UiError> {
    signed_in.require(&[Role::Admin])?;
    let (texts, chain) = state
        .pipeline
        .store
        .call(|conn| Ok((consent::list_texts(conn)?, consent::verify_chain(conn)?)))
        .await?;
    let context = minijinja::context! {
        principal => viewer(&signed_in.principal),
        csrf => signed_in.csrf_token,
        texts => texts,
        chain => chain,
    };
    Ok(render(StatusCode::OK, "consent.html", context))
}

#[derive(Deserialize)]
pub struct ActivateForm {
    csrf: String,
    purpose: String,
    version: i64,
}

/// Makes the consent text version from the form the active one of its purpose.
pub async fn activate(
    State(state): State<AppState>,
    signed_in: SignedIn,
    submitted: Result<Form<ActivateForm>, FormRejection>,
) -> Result<Response, UiError> {
    let submitted = form(submitted)?;
    signed_in.check_csrf(&submitted.csrf)?;
    signed_in.require(&[Role::Admin])?;
    let key_id = Some(signed_in.principal.key_id);
    let result = state
        .pipeline
        .store
        .call(move |conn| {
            consent::activate_text(conn, &submitted.purpose, submitted.version, key_id)
        })
        .await;
    match result {
        Ok(_) => Ok(Redirect::to("/ui/consent").into_response()),
        Err(StoreError::UnknownConsentText { .. }) => Err(UiError::new(
            StatusCode::NOT_FOUND,
            "Такой версии текста согласия нет.",
        )),
        Err(error) => Err(error.into()),
    }
}
