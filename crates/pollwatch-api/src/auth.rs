//! Bearer tokens. A token is made once (`pollwatch token add`), shown once, and kept in the store
//! only as its SHA-256; a request's token is hashed and looked up. Neither a token nor its hash is
//! ever logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use pollwatch_store::{Store, StoreError, TokenRecord};
use sha2::{Digest as _, Sha256};

use crate::Api;
use crate::problem::Problem;

/// The roles a token may have. Every role may read; `reviewer` and `admin` may also decide
/// review states, comment and settle disputed stations (the `POST` endpoints).
pub const ROLES: &[&str] = &["viewer", "reviewer", "admin"];

/// Whether a token of `role` may act as a reviewer.
pub fn may_review(role: &str) -> bool {
    matches!(role, "reviewer" | "admin")
}

/// What every token starts with, so that one pasted in the wrong place is recognisable.
pub const TOKEN_PREFIX: &str = "pw_";

/// How long a token found in the store is trusted without asking the store again: a removed
/// token stops working within this time.
const TRUSTED_FOR: Duration = Duration::from_secs(5);

/// A new random token (244 random bits).
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The SHA-256 of a token, in hexadecimal: what the store keeps. A token is random and long, so
/// a fast hash is enough; no password hashing is needed.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Tokens recently found in the store, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    trusted: Arc<Mutex<HashMap<String, (TokenRecord, Instant)>>>,
}

impl Tokens {
    pub(crate) async fn find(&self, store: &Store, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = token_hash(token);
        if let Some((record, at)) = self.trusted.lock().expect("not poisoned").get(&hash)
            && at.elapsed() < TRUSTED_FOR
        {
            return Ok(Some(record.clone()));
        }
        let found = store.token_by_hash(&hash).await?;
        let mut trusted = self.trusted.lock().expect("not poisoned");
        match &found {
            Some(record) => {
                trusted.insert(hash, (record.clone(), Instant::now()));
            }
            None => {
                trusted.remove(&hash);
            }
        }
        Ok(found)
    }
}

/// The bearer token of a request, if it sends one of a sane length.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?;
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)?;
    (!token.is_empty() && token.len() <= 256).then_some(token)
}

/// Lets a request through only with a known token (any role may read), and hands the token's
/// record (its name and role) to the handler as a request extension.
pub async fn require_token(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    if !request.headers().contains_key(header::AUTHORIZATION) {
        return Problem::unauthorized("send a token as `Authorization: Bearer TOKEN`").into_response();
    }
    let Some(token) = bearer(request.headers()) else {
        return Problem::unauthorized("the Authorization header must be `Bearer TOKEN`").into_response();
    };
    match api.tokens.find(&api.store, token).await {
        Ok(Some(record)) => {
            request.extensions_mut().insert(record);
            next.run(request).await
        }
        Ok(None) => Problem::unauthorized("the token is not known (or was removed)").into_response(),
        Err(error) => Problem::store(&error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed_to_hex() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
