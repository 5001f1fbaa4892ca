//! Errors that tell the worker what to do: retry later, or give up on the input.

/// A store failure. The worker retries a batch after a [`StoreError::Retryable`] and never acks
/// it before; a [`StoreError::Permanent`] means the input (or the set-up) can never succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, busy, or aborted the transaction for concurrency; the same
    /// batch may succeed later.
    #[error("store temporarily unavailable: {0}")]
    Retryable(String),
    /// A constraint the data can never satisfy, bad configuration, or a bug.
    #[error("store error: {0}")]
    Permanent(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// SQLSTATE classes and codes after which retrying makes sense: connection exceptions (08),
/// serialization failure and deadlock (40001, 40P01), insufficient resources (53), operator
/// intervention such as a shutdown (57P01-57P03).
fn retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
}

/// SQLite result codes after which retrying makes sense: SQLITE_BUSY (5), SQLITE_LOCKED (6),
/// and their extended forms (the low byte is the primary code).
fn retryable_sqlite(code: &str) -> bool {
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let message = error.to_string();
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::Retryable(message),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if retryable_sqlstate(&code) || retryable_sqlite(&code) {
                    Self::Retryable(message)
                } else {
                    Self::Permanent(message)
                }
            }
            _ => Self::Permanent(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_and_connection_failures_are_retryable() {
        for code in ["40001", "40P01", "08006", "57P01", "53300"] {
            assert!(retryable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22003"] {
            assert!(!retryable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_and_locked_are_retryable_in_any_extended_form() {
        assert!(retryable_sqlite("5"));
        assert!(retryable_sqlite("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(retryable_sqlite("6"));
        assert!(!retryable_sqlite("19")); // SQLITE_CONSTRAINT
        assert!(!retryable_sqlite("2067")); // SQLITE_CONSTRAINT_UNIQUE
    }

    #[test]
    fn a_closed_pool_is_retryable_and_a_decode_error_is_not() {
        assert!(StoreError::from(sqlx::Error::PoolClosed).is_retryable());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_retryable());
    }
}
