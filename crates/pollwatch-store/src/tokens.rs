//! The API's bearer tokens: a name, a role and the SHA-256 of the token. The token itself is
//! shown once, when it is made, and never stored.

use chrono::{DateTime, Utc};

use crate::db::{Row, Sql};
use crate::queries::micros;
use crate::{Store, StoreError};

/// A token as the store keeps it, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Records a token by the hash of its secret; `false` (and nothing changed) if a token of
    /// that name exists.
    pub async fn add_token(&self, name: &str, role: &str, hash: &str) -> Result<bool, StoreError> {
        let mut sql =
            Sql::new(self.backend, "INSERT INTO api_tokens (name, role, hash, created_at_us) VALUES (");
        sql.bind(name.to_owned())
            .push(", ")
            .bind(role.to_owned())
            .push(", ")
            .bind(hash.to_owned())
            .push(", ")
            .bind(Utc::now().timestamp_micros())
            .push(") ON CONFLICT (name) DO NOTHING RETURNING name");
        Ok(!sql.fetch_all(&self.pool).await?.is_empty())
    }

    /// Removes the token of that name; `false` if there was none.
    pub async fn remove_token(&self, name: &str) -> Result<bool, StoreError> {
        let mut sql = Sql::new(self.backend, "DELETE FROM api_tokens WHERE name = ");
        sql.bind(name.to_owned()).push(" RETURNING name");
        Ok(!sql.fetch_all(&self.pool).await?.is_empty())
    }

    /// Every token, by name.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = Sql::new(self.backend, "SELECT name, role, created_at_us FROM api_tokens ORDER BY name");
        sql.fetch_all(&self.pool).await?.iter().map(token).collect()
    }

    /// The token whose secret has this hash, if any.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let mut sql =
            Sql::new(self.backend, "SELECT name, role, created_at_us FROM api_tokens WHERE hash = ");
        sql.bind(hash.to_owned());
        let rows = sql.fetch_all(&self.pool).await?;
        rows.first().map(token).transpose()
    }
}

/// A token from `SELECT name, role, created_at_us`.
fn token(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord { name: row.try_get(0)?, role: row.try_get(1)?, created_at: micros(row.try_get(2)?)? })
}
