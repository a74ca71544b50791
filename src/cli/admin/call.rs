//! A command as data: the one admin API request a command line stands for (method, path, query,
//! JSON body) and how its answer is shown to people. Every `leasehold admin` verb builds one
//! [`Call`]; [`super::client`] sends it and [`super::output`] prints the answer.

use hyper::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// What may stand unencoded in a path segment or a query value: RFC 3986's unreserved
/// characters. Everything else (`/`, `?`, `&`, spaces, non-ASCII) is percent-encoded, so an id
/// or a product name is always one segment or one value.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `text` percent-encoded for a path segment or a query value.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, ENCODED).to_string()
}

/// A JSON object of the fields that are given (`Some`), in the order given.
pub fn given(fields: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Value {
    Value::Object(fields.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect())
}

/// One admin API request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// The path, from `/admin/`, with its segments already encoded.
    pub path: String,
    /// Query parameters, unencoded.
    pub query: Vec<(&'static str, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// How the answer is shown to people.
    pub view: View,
    /// Whether to follow `next_cursor` until the last page (`--all`).
    pub follow_pages: bool,
    /// A line for people after the answer (as: the key is shown only once).
    pub note: Option<&'static str>,
}

/// How an answer is shown to people (`--json` prints it as it came).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// One object: a `field  value` row per field, nested fields as `outer.inner`.
    Record,
    /// A listing (`{"items": [...]}`): a table with these columns.
    Table(&'static [Column]),
}

/// A column of a table: its header and where its value is in an item (a JSON pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header.
    pub header: &'static str,
    /// The JSON pointer of the value in an item, as `/credit/qty`.
    pub pointer: &'static str,
}

/// A column titled `header` showing the value at `pointer`.
pub const fn column(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer }
}

impl Call {
    /// A request with no body whose answer is one object.
    pub fn new(method: Method, path: String) -> Call {
        Call { method, path, query: Vec::new(), body: None, view: View::Record, follow_pages: false, note: None }
    }

    /// `GET path`.
    pub fn get(path: String) -> Call {
        Call::new(Method::GET, path)
    }

    /// `POST path` with `body`.
    pub fn post(path: String, body: Value) -> Call {
        Call::new(Method::POST, path).with_body(body)
    }

    /// `PATCH path` with `body`.
    pub fn patch(path: String, body: Value) -> Call {
        Call::new(Method::PATCH, path).with_body(body)
    }

    /// `DELETE path`.
    pub fn delete(path: String) -> Call {
        Call::new(Method::DELETE, path)
    }

    /// The same request with `body`.
    pub fn with_body(self, body: Value) -> Call {
        Call { body: Some(body), ..self }
    }

    /// The same request with `name=value` added to its query when `value` is given.
    pub fn with_query(mut self, name: &'static str, value: Option<impl ToString>) -> Call {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }

    /// The same request shown to people with `note` after the answer.
    pub fn with_note(self, note: &'static str) -> Call {
        Call { note: Some(note), ..self }
    }

    /// The same request read as a listing page (`limit`, `cursor`, `--all`) shown in `columns`.
    pub fn listing(self, page: &super::PageArgs, columns: &'static [Column]) -> Call {
        let call = self.with_query("limit", page.limit).with_query("cursor", page.cursor.as_deref());
        Call { follow_pages: page.all, ..call.shown_as(columns) }
    }

    /// The same request, whose answer is `{"items": [...]}` in one page, shown in `columns`.
    pub fn shown_as(self, columns: &'static [Column]) -> Call {
        Call { view: View::Table(columns), ..self }
    }

    /// The path and the encoded query, as sent; `cursor` replaces the query's own.
    pub fn path_and_query(&self, cursor: Option<&str>) -> String {
        let mut query: Vec<(&str, &str)> = self.query.iter().map(|(name, value)| (*name, value.as_str())).collect();
        if let Some(cursor) = cursor {
            query.retain(|(name, _)| *name != "cursor");
            query.push(("cursor", cursor));
        }
        let mut out = self.path.clone();
        for (i, (name, value)) in query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(name);
            out.push('=');
            out.push_str(&encode(value));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_stay_one_segment_or_one_value() {
        assert_eq!(encode("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(encode("hw-1.x_y~z"), "hw-1.x_y~z");
        let call = Call::get("/admin/licenses".into()).with_query("product", Some("Three Dee&Co"));
        assert_eq!(call.path_and_query(None), "/admin/licenses?product=Three%20Dee%26Co");
    }

    #[test]
    fn only_the_given_fields_are_sent() {
        let body = given([("name", Some("Ann".into())), ("email", None), ("disabled", Some(false.into()))]);
        assert_eq!(body, serde_json::json!({"name": "Ann", "disabled": false}));
    }

    #[test]
    fn a_followed_page_replaces_the_cursor_it_started_from() {
        let call = Call::get("/admin/licensees".into()).with_query("limit", Some(2)).with_query("cursor", Some("a"));
        assert_eq!(call.path_and_query(None), "/admin/licensees?limit=2&cursor=a");
        assert_eq!(call.path_and_query(Some("b")), "/admin/licensees?limit=2&cursor=b");
    }
}
