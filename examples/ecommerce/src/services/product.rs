//! product-service: the catalog, with full-text search over SQLite FTS5.
//!
//! - `GET /api/products`: every product.
//! - `GET /api/products/search?q=…`: FTS5 match on name and description,
//!   best first (`bm25`), at most `search.max_results` of them; the query
//!   is passed as quoted terms, so user input cannot use FTS5 syntax. With
//!   the feature flag `features.search` off: `404` `search_disabled`.
//!
//! Both settings come from the config server and are read per request from
//! the service's [`Watched`] settings, so an edit of
//! `config/product-service-demo.yaml` under the data dir changes the next
//! search without a restart ([`crate::platform::settings`]).
//! - `GET /api/products/{sku}`: one product.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use tower::ServiceExt;
//! let dir = tempfile::tempdir()?;
//! let db = ecommerce::platform::open_db(dir.path(), "products.db").await?;
//! ecommerce::services::product::migrate(&db, &ecommerce::services::product::seed_catalog()).await?;
//! let config = ecommerce::platform::settings::ConfigService::start(
//!     dir.path().join("config"), "127.0.0.1:0".parse()?).await?;
//! let settings = config.watch("product-service").await?;
//! let app = ecommerce::services::product::routes(db, settings);
//! let req = http::Request::get("/api/products/search?q=green%20tea").body(axum::body::Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(())
//! # }
//! ```

use super::ApiError;
use crate::platform::settings::ServiceSettings;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use msp_config::Watched;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

/// A product of the catalog.
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct Product {
    /// Its stock-keeping unit, the id other services use.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Its price, in cents.
    pub cents: i64,
}

/// The catalog `cargo run -p ecommerce` starts with.
pub fn seed_catalog() -> Vec<Product> {
    let p = |sku: &str, name: &str, description: &str, cents| Product {
        sku: sku.into(),
        name: name.into(),
        description: description.into(),
        cents,
    };
    vec![
        p(
            "book-42",
            "The Hitchhiker's Guide",
            "A paperback guide to the galaxy",
            1_999,
        ),
        p(
            "lamp-7",
            "Desk lamp",
            "A warm LED desk lamp with a brass arm",
            4_500,
        ),
        p(
            "mug-1",
            "Coffee mug",
            "A stoneware mug for coffee or tea",
            1_200,
        ),
        p(
            "tea-3",
            "Green tea",
            "Loose-leaf green tea from Shizuoka",
            900,
        ),
    ]
}

/// Creates the tables (a products table and its FTS5 index) and inserts
/// `catalog` (existing SKUs are kept).
pub async fn migrate(db: &SqlitePool, catalog: &[Product]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, \
         name TEXT NOT NULL, description TEXT NOT NULL, cents INTEGER NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(name, description, \
         content='products', content_rowid='id')",
    )
    .execute(db)
    .await?;
    for p in catalog {
        let mut tx = db.begin().await?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO products (sku, name, description, cents) VALUES (?, ?, ?, ?)",
        )
        .bind(&p.sku)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.cents)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            sqlx::query("INSERT INTO products_fts (rowid, name, description) VALUES (?, ?, ?)")
                .bind(inserted.last_insert_rowid())
                .bind(&p.name)
                .bind(&p.description)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// The handlers' state: the catalog and the live settings.
#[derive(Clone)]
struct Catalog {
    db: SqlitePool,
    settings: Watched<ServiceSettings>,
}

impl FromRef<Catalog> for SqlitePool {
    fn from_ref(c: &Catalog) -> Self {
        c.db.clone()
    }
}

impl FromRef<Catalog> for Watched<ServiceSettings> {
    fn from_ref(c: &Catalog) -> Self {
        c.settings.clone()
    }
}

/// The service's routes, reading `settings` on each search.
pub fn routes(db: SqlitePool, settings: Watched<ServiceSettings>) -> Router {
    Router::new()
        .route("/api/products", get(list))
        .route("/api/products/", get(list))
        .route("/api/products/search", get(search))
        .route("/api/products/{sku}", get(one))
        .with_state(Catalog { db, settings })
}

async fn list(State(db): State<SqlitePool>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(
        sqlx::query_as("SELECT sku, name, description, cents FROM products ORDER BY sku")
            .fetch_all(&db)
            .await?,
    ))
}

/// The query string of a search.
#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: String,
}

/// Each whitespace-separated word as an FTS5 string (`"word"`), so the
/// user's input is matched as text, never parsed as FTS5 operators.
fn fts_terms(q: &str) -> String {
    q.split_whitespace()
        .take(16)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn search(
    State(db): State<SqlitePool>,
    State(settings): State<Watched<ServiceSettings>>,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Vec<Product>>, ApiError> {
    let settings = settings.get();
    if !settings.features.search {
        return Err(ApiError::new(
            http::StatusCode::NOT_FOUND,
            "search_disabled",
            "product search is turned off (features.search)",
        ));
    }
    let terms = fts_terms(&query.q);
    if terms.is_empty() {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(
        sqlx::query_as(
            "SELECT p.sku, p.name, p.description, p.cents FROM products_fts f \
             JOIN products p ON p.id = f.rowid WHERE products_fts MATCH ? ORDER BY bm25(products_fts) LIMIT ?",
        )
        .bind(terms)
        .bind(settings.search.max_results)
        .fetch_all(&db)
        .await?,
    ))
}

async fn one(
    State(db): State<SqlitePool>,
    Path(sku): Path<String>,
) -> Result<Json<Product>, ApiError> {
    sqlx::query_as("SELECT sku, name, description, cents FROM products WHERE sku = ?")
        .bind(&sku)
        .fetch_optional(&db)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no product {sku}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_terms_are_quoted() {
        assert_eq!(super::fts_terms("desk  lamp"), "\"desk\" \"lamp\"");
        assert_eq!(super::fts_terms("a\" OR b"), "\"a\"\"\" \"OR\" \"b\"");
    }
}
