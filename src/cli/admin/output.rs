//! What `leasehold admin` prints: the server's JSON, pretty, for scripts (`--json`); for people,
//! a listing as a table with aligned columns and one object as `field  value` rows.

use super::call::{Column, View};
use serde_json::Value;

/// Fields shown first in a record, in this order; the others follow by name.
const LEADING_FIELDS: [&str; 2] = ["id", "name"];

/// Spaces between two columns.
const GAP: usize = 2;

/// `answer` as text: pretty JSON when `json`, otherwise as `view` says. An empty answer (a
/// 204) is no text at all.
pub fn render(answer: &Value, view: View, json: bool) -> String {
    match (answer, view) {
        (Value::Null, _) => String::new(),
        _ if json => serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string()) + "\n",
        (_, View::Table(columns)) => table(answer, columns),
        (_, View::Record) => record(answer),
    }
}

/// A listing's items as rows under the columns' headers, and the cursor of the next page when
/// there is one.
fn table(listing: &Value, columns: &[Column]) -> String {
    let items = listing["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let header = columns.iter().map(|c| c.header.to_owned()).collect();
    let rows =
        items.iter().map(|item| columns.iter().map(|c| item.pointer(c.pointer).map_or_else(dash, cell)).collect());
    let mut out = aligned(std::iter::once(header).chain(rows).collect());
    if let Some(cursor) = listing["next_cursor"].as_str() {
        out.push_str(&format!("(more: --cursor {cursor}, or --all)\n"));
    }
    out
}

/// One object's fields as `field  value` rows; nested objects as `outer.inner` rows.
fn record(object: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", object, &mut rows);
    let rank = |field: &str| LEADING_FIELDS.iter().position(|f| *f == field).unwrap_or(LEADING_FIELDS.len());
    rows.sort_by_key(|row| rank(&row[0]));
    aligned(rows)
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                let name = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                flatten(&name, field, rows);
            }
        }
        other if prefix.is_empty() => rows.push(vec!["value".into(), cell(other)]),
        other => rows.push(vec![prefix.to_owned(), cell(other)]),
    }
}

/// A value in one cell: strings without quotes, `-` for null or an empty list, lists joined by
/// `,` (a named thing, as a feature or a tier, by its name), other objects as compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => dash(),
        Value::Array(items) if items.is_empty() => dash(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(fields) => match fields.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

fn dash() -> String {
    "-".into()
}

/// Rows of cells with every column as wide as its widest cell (the last one unpadded).
fn aligned(rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(width - cell.chars().count() + GAP));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::admin::call::column;
    use serde_json::json;

    #[test]
    fn a_listing_is_a_table_with_aligned_columns() {
        const COLUMNS: &[Column] = &[column("ID", "/id"), column("QTY", "/credit/qty"), column("TIER", "/tier")];
        let listing = json!({"items": [{"id": "a", "credit": {"qty": 3}, "tier": null},
                                        {"id": "bbbb", "credit": {"qty": 10}, "tier": "Pro"}],
                             "next_cursor": "bbbb"});
        let text = render(&listing, View::Table(COLUMNS), false);
        assert_eq!(text, "ID    QTY  TIER\na     3    -\nbbbb  10   Pro\n(more: --cursor bbbb, or --all)\n");
    }

    #[test]
    fn an_object_is_field_value_rows_with_id_and_name_first() {
        let object = json!({"kind": "user", "name": "Ann", "id": "c1", "licensees": ["l1", "l2"], "tags": [],
                            "credit": {"qty": 1}, "features": [{"name": "render", "display_only": false}]});
        let text = render(&object, View::Record, false);
        assert_eq!(
            text,
            "id          c1\nname        Ann\ncredit.qty  1\nfeatures    render\nkind        user\nlicensees   l1,l2\ntags        -\n"
        );
    }

    #[test]
    fn json_is_the_answer_pretty_and_an_empty_answer_prints_nothing() {
        assert_eq!(render(&json!({"kid": "k1"}), View::Record, true), "{\n  \"kid\": \"k1\"\n}\n");
        assert_eq!(render(&Value::Null, View::Record, false), "");
    }
}
