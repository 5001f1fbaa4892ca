//! The two backends behind one small interface: a pool, a transaction, a row, and a SQL builder
//! that writes each backend's placeholders and binds through its native driver.

use futures_core::Stream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, Decode, Encode, PgPool, Postgres, Sqlite, SqlitePool, Transaction, Type};

use crate::{Backend, StoreError};

/// A value both backends can bind.
pub(crate) trait Bindable:
    for<'q> Encode<'q, Sqlite> + Type<Sqlite> + for<'q> Encode<'q, Postgres> + Type<Postgres> + Send + 'static
{
}

impl<T> Bindable for T where
    T: for<'q> Encode<'q, Sqlite>
        + Type<Sqlite>
        + for<'q> Encode<'q, Postgres>
        + Type<Postgres>
        + Send
        + 'static
{
}

/// A value both backends can read.
pub(crate) trait Readable:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Readable for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A value [`Sql::bind_in`] can match against: bound one by one on SQLite, as an array of
/// `SQL_TYPE` on PostgreSQL.
pub(crate) trait Listable: Bindable + Clone + Default + sqlx::postgres::PgHasArrayType {
    const SQL_TYPE: &'static str;
}

impl Listable for String {
    const SQL_TYPE: &'static str = "text";
}

impl Listable for i64 {
    const SQL_TYPE: &'static str = "bigint";
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Pool {
    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), waiting its turn behind another writer or a checkpoint, instead of
    /// failing with "database is locked" when it first writes after reading.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Sqlite(pool) => pool.is_closed(),
            Self::Postgres(pool) => pool.is_closed(),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

impl Row {
    /// Column `index` as `T`.
    pub(crate) fn try_get<T: Readable>(&self, index: usize) -> Result<T, sqlx::Error> {
        use sqlx::Row as _;
        match self {
            Self::Sqlite(row) => row.try_get(index),
            Self::Postgres(row) => row.try_get(index),
        }
    }
}

enum Args {
    Sqlite(SqliteArguments),
    Postgres(PgArguments),
}

/// Builds SQL and its arguments together, with each backend's placeholders: `$1`, `$2`, … for
/// PostgreSQL, `?` for SQLite (whose numbered parameters cost a linear search each, which makes
/// statements with thousands of values slow). Values are bound in the order they appear.
pub(crate) struct Sql {
    text: String,
    args: Args,
    /// Placeholders written so far.
    count: usize,
}

impl Sql {
    pub(crate) fn new(backend: Backend, text: &str) -> Self {
        let args = match backend {
            Backend::Sqlite => Args::Sqlite(SqliteArguments::default()),
            Backend::Postgres => Args::Postgres(PgArguments::default()),
        };
        Self { text: text.to_owned(), args, count: 0 }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(crate) fn bind<T: Bindable>(&mut self, value: T) -> &mut Self {
        self.count += 1;
        // Binding values of the types used here cannot fail.
        match &mut self.args {
            Args::Sqlite(args) => {
                self.text.push('?');
                args.add(value).expect("binding a value");
            }
            Args::Postgres(args) => {
                self.text.push_str(&format!("${}", self.count));
                args.add(value).expect("binding a value");
            }
        }
        self
    }

    /// Binds a whole column as one array, written `$n::TYPE[]`, for `UNNEST` (PostgreSQL only:
    /// one parameter per column instead of one per value).
    pub(crate) fn bind_array<T>(&mut self, values: Vec<T>, sql_type: &str) -> &mut Self
    where
        Vec<T>: for<'q> Encode<'q, Postgres> + Type<Postgres> + Send + 'static,
    {
        self.count += 1;
        match &mut self.args {
            Args::Postgres(args) => {
                self.text.push_str(&format!("${}::{sql_type}[]", self.count));
                args.add(values).expect("binding an array");
            }
            Args::Sqlite(_) => unreachable!("arrays are bound for PostgreSQL only"),
        }
        self
    }

    /// Appends ` IN (v1, v2, …)` on SQLite, ` = ANY($n::TYPE[])` (one array) on PostgreSQL.
    /// On SQLite the list is padded to a power of two by repeating its last value (which changes
    /// nothing an `IN` matches), so that a few statement texts serve every batch size and stay
    /// prepared in the connection's statement cache. Callers split longer lists into
    /// [`rows_per_statement`]`(1)` values each, which the padding keeps within the limit.
    pub(crate) fn bind_in<T: Listable>(&mut self, values: Vec<T>) -> &mut Self {
        if matches!(self.args, Args::Postgres(_)) {
            return self.push(" = ANY(").bind_array(values, T::SQL_TYPE).push(")");
        }
        let padded = values.len().next_power_of_two();
        let last = values.last().cloned().unwrap_or_default();
        self.push(" IN (");
        let padding = std::iter::repeat_n(last, padded - values.len());
        for (i, value) in values.into_iter().chain(padding).enumerate() {
            self.push(if i == 0 { "" } else { ", " }).bind(value);
        }
        self.push(")")
    }

    /// Appends `(…), (…)` rows, each filled by `row`.
    pub(crate) fn values<I>(&mut self, rows: I, row: impl Fn(&mut Self, I::Item)) -> &mut Self
    where
        I: IntoIterator,
    {
        for (i, item) in rows.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            row(self, item);
            self.push(")");
        }
        self
    }

    pub(crate) async fn fetch_all(self, pool: &Pool) -> Result<Vec<Row>, StoreError> {
        let text = sqlx::AssertSqlSafe(self.text);
        Ok(match (pool, self.args) {
            (Pool::Sqlite(pool), Args::Sqlite(args)) => {
                sqlx::query_with(text, args).fetch_all(pool).await?.into_iter().map(Row::Sqlite).collect()
            }
            (Pool::Postgres(pool), Args::Postgres(args)) => {
                sqlx::query_with(text, args).fetch_all(pool).await?.into_iter().map(Row::Postgres).collect()
            }
            _ => unreachable!("a statement is built for its store's backend"),
        })
    }

    pub(crate) async fn fetch_one(self, pool: &Pool) -> Result<Row, StoreError> {
        self.fetch_all(pool)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::from(sqlx::Error::RowNotFound))
    }

    pub(crate) async fn fetch_all_in(self, tx: &mut Tx) -> Result<Vec<Row>, StoreError> {
        let text = sqlx::AssertSqlSafe(self.text);
        Ok(match (tx, self.args) {
            (Tx::Sqlite(tx), Args::Sqlite(args)) => sqlx::query_with(text, args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            (Tx::Postgres(tx), Args::Postgres(args)) => sqlx::query_with(text, args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            _ => unreachable!("a statement is built for its store's backend"),
        })
    }

    pub(crate) async fn execute_in(self, tx: &mut Tx) -> Result<(), StoreError> {
        let text = sqlx::AssertSqlSafe(self.text);
        match (tx, self.args) {
            (Tx::Sqlite(tx), Args::Sqlite(args)) => {
                sqlx::query_with(text, args).execute(&mut **tx).await?;
            }
            (Tx::Postgres(tx), Args::Postgres(args)) => {
                sqlx::query_with(text, args).execute(&mut **tx).await?;
            }
            _ => unreachable!("a statement is built for its store's backend"),
        }
        Ok(())
    }

    /// The rows one by one, for results larger than memory.
    pub(crate) fn fetch(self, pool: &Pool) -> impl Stream<Item = Result<Row, StoreError>> + Send + '_ {
        let text = sqlx::AssertSqlSafe(self.text);
        match (pool, self.args) {
            (Pool::Sqlite(pool), Args::Sqlite(args)) => {
                sqlx::query_with(text, args).fetch(pool).map_ok(Row::Sqlite).map_err(StoreError::from).boxed()
            }
            (Pool::Postgres(pool), Args::Postgres(args)) => sqlx::query_with(text, args)
                .fetch(pool)
                .map_ok(Row::Postgres)
                .map_err(StoreError::from)
                .boxed(),
            _ => unreachable!("a statement is built for its store's backend"),
        }
    }
}

/// Most values bound in one statement: well under SQLite's limit of 32,766 and PostgreSQL's of
/// 65,535. Statements that bind a value per row go through [`rows_per_statement`].
const MAX_PARAMS: usize = 6_000;

/// How many rows of `values_per_row` bound values one statement takes: the largest power of two
/// that keeps it within [`MAX_PARAMS`], and at least one row. Powers of two also keep the
/// statement texts few, so that they stay prepared in the connection's cache (see
/// [`Rows::insert`] and [`Sql::bind_in`]).
pub(crate) fn rows_per_statement(values_per_row: usize) -> usize {
    largest_power_of_two(MAX_PARAMS / values_per_row.max(1))
}

/// The largest power of two not above `n` (at least 1).
fn largest_power_of_two(n: usize) -> usize {
    1 << n.max(1).ilog2()
}

/// One column of [`Rows`].
pub(crate) enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Self::Text(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Bool(v) => v.len(),
        }
    }

    /// Binds the value in `row`, moving it out.
    fn bind_value(&mut self, sql: &mut Sql, row: usize) {
        match self {
            Self::Text(v) => sql.bind(v[row].take()),
            Self::Int(v) => sql.bind(v[row]),
            Self::Bool(v) => sql.bind(v[row]),
        };
    }

    fn bind_array(self, sql: &mut Sql) {
        match self {
            Self::Text(v) => sql.bind_array(v, "text"),
            Self::Int(v) => sql.bind_array(v, "bigint"),
            Self::Bool(v) => sql.bind_array(v, "boolean"),
        };
    }
}

/// Rows to insert, held column by column.
#[derive(Default)]
pub(crate) struct Rows {
    names: Vec<&'static str>,
    columns: Vec<Column>,
}

impl Rows {
    pub(crate) fn text(mut self, name: &'static str, values: impl IntoIterator<Item = String>) -> Self {
        self.names.push(name);
        self.columns.push(Column::Text(values.into_iter().map(Some).collect()));
        self
    }

    pub(crate) fn optional_text(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<String>>,
    ) -> Self {
        self.names.push(name);
        self.columns.push(Column::Text(values.into_iter().collect()));
        self
    }

    pub(crate) fn int(mut self, name: &'static str, values: impl IntoIterator<Item = i64>) -> Self {
        self.names.push(name);
        self.columns.push(Column::Int(values.into_iter().collect()));
        self
    }

    pub(crate) fn bool(mut self, name: &'static str, values: impl IntoIterator<Item = bool>) -> Self {
        self.names.push(name);
        self.columns.push(Column::Bool(values.into_iter().collect()));
        self
    }

    fn len(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// `INSERT INTO table (columns) … tail` as statements: on PostgreSQL one, each column bound as
    /// one array (`SELECT * FROM UNNEST(…)`), so a batch costs a dozen parameters however many rows
    /// it has; on SQLite `VALUES (?, …), …`, split to stay within the parameter limit. None when
    /// there are no rows.
    pub(crate) fn insert(mut self, backend: Backend, table: &str, tail: &str) -> Vec<Sql> {
        let rows = self.len();
        debug_assert!(self.columns.iter().all(|c| c.len() == rows), "columns of one length");
        if rows == 0 {
            return Vec::new();
        }
        let head = format!("INSERT INTO {table} ({}) ", self.names.join(", "));
        match backend {
            Backend::Postgres => {
                let mut sql = Sql::new(backend, &head);
                sql.push("SELECT * FROM UNNEST(");
                for (i, column) in self.columns.into_iter().enumerate() {
                    sql.push(if i == 0 { "" } else { ", " });
                    column.bind_array(&mut sql);
                }
                sql.push(")").push(tail);
                vec![sql]
            }
            Backend::Sqlite => {
                let most = rows_per_statement(self.columns.len());
                let mut statements = Vec::new();
                let mut start = 0;
                while start < rows {
                    // Statements of a power of two rows: a batch of any size then uses a handful
                    // of statement texts that stay prepared in the connection's cache, instead of
                    // one text per row count, each parsed anew and cached (sqlx caches 100
                    // statements per connection; at thousands of parameters each, that was tens
                    // of MiB).
                    let size = largest_power_of_two(rows - start).min(most);
                    let mut sql = Sql::new(backend, &head);
                    sql.push("VALUES ");
                    for row in start..start + size {
                        sql.push(if row == start { "(" } else { ", (" });
                        for (i, column) in self.columns.iter_mut().enumerate() {
                            sql.push(if i == 0 { "" } else { ", " });
                            column.bind_value(&mut sql, row);
                        }
                        sql.push(")");
                    }
                    sql.push(tail);
                    statements.push(sql);
                    start += size;
                }
                statements
            }
        }
    }
}
