//! Both migration trees end in the same schema: a fresh SQLite and a fresh PostgreSQL
//! database, migrated as the node migrates them, are read back from their catalogs and
//! compared table by table: columns (types mapped between the dialects, nullability,
//! defaults), primary keys, indexes (columns, uniqueness, partial or not), foreign keys
//! (columns, target, `ON DELETE`) and `CHECK` constraints (how many, on which columns).
//! Whatever migrations exist are covered: nothing here names a table.

use sichat_e2e::{Backend, TempDir, TestDb};
use sqlx::{Connection, PgConnection, Row, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default, PartialEq)]
struct Table {
    /// name → (type, not null, default)
    columns: BTreeMap<String, (String, bool, String)>,
    primary_key: Vec<String>,
    /// (columns, unique, partial)
    indexes: BTreeSet<(String, bool, bool)>,
    /// (columns, referenced table, referenced columns, on delete)
    foreign_keys: BTreeSet<(String, String, String, String)>,
    /// The columns each CHECK constraint names.
    checks: BTreeSet<String>,
}

type Schema = BTreeMap<String, Table>;

/// One name per type, across dialects. SQLite's INTEGER is 64-bit, as PostgreSQL's BIGINT;
/// PostgreSQL's INTEGER is not the same type and stays apart.
fn sqlite_type(declared: &str) -> String {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "int64".into()
    } else if t.contains("TEXT") || t.contains("CHAR") || t.contains("CLOB") {
        "text".into()
    } else if t.is_empty() || t.contains("BLOB") {
        "bytes".into()
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "float".into()
    } else if t.contains("BOOL") {
        "bool".into()
    } else {
        t.to_ascii_lowercase()
    }
}

fn postgres_type(data_type: &str) -> String {
    match data_type {
        "bigint" => "int64".into(),
        "integer" => "int32".into(),
        "smallint" => "int16".into(),
        "text" | "character varying" | "character" => "text".into(),
        "bytea" => "bytes".into(),
        "double precision" | "real" | "numeric" => "float".into(),
        "boolean" => "bool".into(),
        other => other.into(),
    }
}

/// A default as both dialects would agree on it: no casts, no parentheses, numbers
/// unquoted, booleans as 0/1 (SQLite's only spelling), lower case.
fn default_value(raw: &str) -> String {
    let mut v = raw.trim().to_owned();
    while let Some(at) = v.rfind("::") {
        if v[at..].contains('\'') {
            break;
        }
        v.truncate(at);
    }
    let mut v = v.trim().trim_start_matches('(').trim_end_matches(')').trim().to_ascii_lowercase();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') && v[1..v.len() - 1].parse::<f64>().is_ok() {
        v = v[1..v.len() - 1].to_owned();
    }
    match v.as_str() {
        "true" => "1".into(),
        "false" => "0".into(),
        "null" => String::new(),
        _ => v,
    }
}

/// The table's columns a CHECK expression names, as one key.
fn check_columns(expr: &str, columns: &BTreeMap<String, (String, bool, String)>) -> String {
    let words: BTreeSet<String> = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_ascii_lowercase)
        .filter(|w| columns.contains_key(w))
        .collect();
    words.into_iter().collect::<Vec<_>>().join(",")
}

/// The bodies of the `CHECK (…)` clauses in a `CREATE TABLE` statement.
fn sqlite_checks(sql: &str) -> Vec<String> {
    let upper = sql.to_ascii_uppercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = upper[from..].find("CHECK") {
        let start = from + at + "CHECK".len();
        let Some(open) = sql[start..].find('(').map(|o| start + o) else { break };
        let mut depth = 0;
        let mut end = open;
        for (i, c) in sql[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(sql[open + 1..end].to_owned());
        from = end.max(start);
    }
    out
}

fn on_delete(action: &str) -> String {
    match action {
        "a" | "NO ACTION" => "no action",
        "r" | "RESTRICT" => "restrict",
        "c" | "CASCADE" => "cascade",
        "n" | "SET NULL" => "set null",
        "d" | "SET DEFAULT" => "set default",
        other => other,
    }
    .to_owned()
}

async fn sqlite_schema(url: &str) -> Schema {
    let mut c = SqliteConnection::connect(url).await.expect("connect");
    let tables = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    let mut schema = Schema::new();
    for t in tables {
        let (name, sql): (String, String) = (t.get(0), t.get(1));
        let mut table = Table::default();
        let mut pk = Vec::new();
        for col in sqlx::query(&format!("PRAGMA table_info(\"{name}\")")).fetch_all(&mut c).await.expect("columns") {
            let (col_name, ty, not_null, default, pk_pos): (String, String, i64, Option<String>, i64) =
                (col.get(1), col.get(2), col.get(3), col.get(4), col.get(5));
            // A primary key column is never NULL in PostgreSQL; in SQLite only an INTEGER
            // one is enforced, but the schema means the same.
            let not_null = not_null != 0 || pk_pos > 0;
            if pk_pos > 0 {
                pk.push((pk_pos, col_name.clone()));
            }
            let default = default_value(default.as_deref().unwrap_or(""));
            table.columns.insert(col_name.to_ascii_lowercase(), (sqlite_type(&ty), not_null, default));
        }
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, n)| n.to_ascii_lowercase()).collect();
        for idx in sqlx::query(&format!("PRAGMA index_list(\"{name}\")")).fetch_all(&mut c).await.expect("indexes") {
            let (idx_name, unique, origin, partial): (String, i64, String, i64) =
                (idx.get(1), idx.get(2), idx.get(3), idx.get(4));
            if origin == "pk" {
                continue;
            }
            let cols: Vec<String> = sqlx::query(&format!("PRAGMA index_info(\"{idx_name}\")"))
                .fetch_all(&mut c)
                .await
                .expect("index columns")
                .iter()
                .map(|r| r.get::<Option<String>, _>(2).map(|n| n.to_ascii_lowercase()).unwrap_or("<expr>".into()))
                .collect();
            table.indexes.insert((cols.join(","), unique != 0, partial != 0));
        }
        let mut fks: BTreeMap<i64, (Vec<String>, String, Vec<String>, String)> = BTreeMap::new();
        for fk in sqlx::query(&format!("PRAGMA foreign_key_list(\"{name}\")")).fetch_all(&mut c).await.expect("fks") {
            let (id, target, from, to, action): (i64, String, String, Option<String>, String) =
                (fk.get(0), fk.get(2), fk.get(3), fk.get(4), fk.get(6));
            let entry = fks.entry(id).or_insert_with(|| (Vec::new(), target.to_ascii_lowercase(), Vec::new(), action));
            entry.0.push(from.to_ascii_lowercase());
            entry.2.push(to.unwrap_or_default().to_ascii_lowercase());
        }
        for (_, (from, target, mut to, action)) in fks {
            // `REFERENCES t` with no column means t's primary key.
            if to.iter().all(String::is_empty) {
                to = Vec::new();
            }
            table.foreign_keys.insert((from.join(","), target, to.join(","), on_delete(&action)));
        }
        table.checks = sqlite_checks(&sql).iter().map(|e| check_columns(e, &table.columns)).collect();
        schema.insert(name.to_ascii_lowercase(), table);
    }
    // Fill in implicit foreign-key targets (the referenced table's primary key).
    let pks: BTreeMap<String, String> = schema.iter().map(|(n, t)| (n.clone(), t.primary_key.join(","))).collect();
    for table in schema.values_mut() {
        table.foreign_keys = std::mem::take(&mut table.foreign_keys)
            .into_iter()
            .map(|(f, t, to, a)| {
                let to = if to.is_empty() { pks.get(&t).cloned().unwrap_or_default() } else { to };
                (f, t, to, a)
            })
            .collect();
    }
    schema
}

async fn postgres_schema(url: &str) -> Schema {
    let mut c = PgConnection::connect(url).await.expect("connect");
    let mut schema = Schema::new();
    let columns = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text, \
                COALESCE(c.column_default, '')::text \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .expect("columns");
    for col in columns {
        let (table, name, ty, nullable, default): (String, String, String, String, String) =
            (col.get(0), col.get(1), col.get(2), col.get(3), col.get(4));
        schema
            .entry(table)
            .or_default()
            .columns
            .insert(name, (postgres_type(&ty), nullable == "NO", default_value(&default)));
    }
    let cols_of = |key: &str, rel: &str| {
        format!(
            "array_to_string(ARRAY(SELECT COALESCE(a.attname::text, '<expr>') FROM unnest({key}) WITH ORDINALITY k(n, o) \
             LEFT JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.n ORDER BY k.o), ',')"
        )
    };
    let indexes = sqlx::query(&format!(
        "SELECT t.relname::text, {}, ix.indisunique, ix.indisprimary, ix.indpred IS NOT NULL \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
        cols_of("ix.indkey", "t.oid")
    ))
    .fetch_all(&mut c)
    .await
    .expect("indexes");
    for idx in indexes {
        let (table, cols, unique, primary, partial): (String, String, bool, bool, bool) =
            (idx.get(0), idx.get(1), idx.get(2), idx.get(3), idx.get(4));
        let t = schema.entry(table).or_default();
        if primary {
            t.primary_key = cols.split(',').map(str::to_owned).collect();
        } else {
            t.indexes.insert((cols, unique, partial));
        }
    }
    let constraints = sqlx::query(&format!(
        "SELECT t.relname::text, c.contype::text, {}, COALESCE(r.relname::text, ''), {}, c.confdeltype::text, \
                pg_get_constraintdef(c.oid) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         LEFT JOIN pg_class r ON r.oid = c.confrelid \
         WHERE n.nspname = 'public' AND c.contype IN ('f', 'c')",
        cols_of("c.conkey", "c.conrelid"),
        cols_of("c.confkey", "c.confrelid"),
    ))
    .fetch_all(&mut c)
    .await
    .expect("constraints");
    for con in constraints {
        let (table, kind, from, target, to, action, def): (String, String, String, String, String, String, String) =
            (con.get(0), con.get(1), con.get(2), con.get(3), con.get(4), con.get(5), con.get(6));
        let t = schema.entry(table).or_default();
        if kind == "f" {
            t.foreign_keys.insert((from, target, to, on_delete(&action)));
        } else {
            let key = check_columns(&def, &t.columns);
            t.checks.insert(key);
        }
    }
    schema
}

/// Every difference, one line each.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        let (Some(s), Some(p)) = (sqlite.get(name), postgres.get(name)) else {
            let only = if sqlite.contains_key(name) { "SQLite" } else { "PostgreSQL" };
            out.push(format!("table {name}: only in {only}"));
            continue;
        };
        let cols: BTreeSet<&String> = s.columns.keys().chain(p.columns.keys()).collect();
        for col in cols {
            match (s.columns.get(col), p.columns.get(col)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => out.push(format!("{name}.{col}: SQLite {a:?} ≠ PostgreSQL {b:?} (type, not null, default)")),
            }
        }
        if s.primary_key != p.primary_key {
            out.push(format!("{name}: primary key SQLite {:?} ≠ PostgreSQL {:?}", s.primary_key, p.primary_key));
        }
        for (what, a, b) in [
            ("index (columns, unique, partial)", fmt_set(&s.indexes), fmt_set(&p.indexes)),
            ("foreign key (columns, table, columns, on delete)", fmt_set(&s.foreign_keys), fmt_set(&p.foreign_keys)),
            ("CHECK on columns", fmt_set(&s.checks), fmt_set(&p.checks)),
        ] {
            for x in a.difference(&b) {
                out.push(format!("{name}: {what} {x} only in SQLite"));
            }
            for x in b.difference(&a) {
                out.push(format!("{name}: {what} {x} only in PostgreSQL"));
            }
        }
    }
    out
}

fn fmt_set<T: std::fmt::Debug>(s: &BTreeSet<T>) -> BTreeSet<String> {
    s.iter().map(|x| format!("{x:?}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrations_end_in_the_same_schema() {
    sichat_e2e::or_hung(async {
        let dir = TempDir::new("schema");
        let Some(sqlite) = TestDb::create(Backend::Sqlite, dir.path()).await else { return };
        let Some(postgres) = TestDb::create(Backend::Postgres, dir.path()).await else { return };
        for db in [&sqlite, &postgres] {
            sichat_core::db::Db::open(&db.url).await.expect("migrate").close().await;
        }
        let (s, p) = (sqlite_schema(&sqlite.url).await, postgres_schema(&postgres.url).await);
        assert!(s.len() > 30 && s.contains_key("acct_users"), "the SQLite schema was read: {:?}", s.keys());
        assert!(s["acct_users"].columns.len() > 3 && !s["acct_users"].primary_key.is_empty());
        let diff = differences(&s, &p);
        assert!(diff.is_empty(), "the migration trees differ:\n{}", diff.join("\n"));
    })
    .await
}

#[test]
fn the_comparison_sees_what_it_must() {
    assert_eq!(default_value("'pending'::text"), "'pending'");
    assert_eq!(default_value("'-1'::integer"), "-1");
    assert_eq!(default_value("(0)"), "0");
    assert_eq!(default_value("false"), "0");
    assert_eq!(sqlite_type("BIGINT"), postgres_type("bigint"));
    assert_ne!(sqlite_type("INTEGER"), postgres_type("integer"), "INTEGER is 32-bit in PostgreSQL");
    let sql = "CREATE TABLE t (a INTEGER CHECK (a IN (0, 1)), b TEXT, CHECK (length(b) > 0 AND a >= 0))";
    assert_eq!(sqlite_checks(sql), ["a IN (0, 1)", "length(b) > 0 AND a >= 0"]);
    let mut s = Schema::new();
    s.entry("t".into()).or_default().columns.insert("a".into(), ("int64".into(), true, String::new()));
    let mut p = Schema::new();
    p.entry("t".into()).or_default().columns.insert("a".into(), ("int64".into(), false, String::new()));
    assert_eq!(differences(&s, &p).len(), 1, "nullability differs");
    p.insert("u".into(), Table::default());
    assert_eq!(differences(&s, &p).len(), 2, "a table only on one side");
}
