//! Query strings of the admin endpoints: known names only, each at most once, values never
//! quoted in errors.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::error::ApiError;

/// The parameters of one query string.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Reads the query string, rejecting names outside `allowed` and repeated names.
    ///
    /// # Errors
    /// 400 `invalid_query` for a query string that does not parse, `unknown_parameter` and
    /// `repeated_parameter` otherwise.
    pub fn read(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&str],
    ) -> Result<Params, ApiError> {
        let Query(pairs) = query.map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                "the query string is not valid URL encoding",
            )
        })?;
        for (index, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!(
                        "the query has a parameter that is not accepted; accepted: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::bad_request(
                    "repeated_parameter",
                    format!("the parameter `{name}` appears more than once"),
                ));
            }
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Returns parameter `name` as an integer in `min..=max`.
    ///
    /// # Errors
    /// 400 `invalid_parameter` naming the parameter and the range.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value.trim().parse::<i64>() {
            Ok(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be an integer from {min} to {max}"),
            )),
        }
    }

    /// Returns parameter `name` as an RFC 3339 time, normalised to UTC.
    ///
    /// # Errors
    /// 400 `invalid_parameter` naming the parameter.
    pub fn time(&self, name: &str) -> Result<Option<String>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let at = crate::clock::parse(value).map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be an RFC 3339 time such as 2026-12-04T10:00:00Z"),
            )
        })?;
        Ok(Some(crate::clock::format(at)))
    }
}
