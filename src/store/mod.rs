//! The call journal: sqlx repositories over SQLite; migrations in `sql/sqlite/`.
