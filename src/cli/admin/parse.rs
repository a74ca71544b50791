//! Readers of the admin commands' argument values (`--property k=v`, `--model key=json`,
//! `--tier 'Name:f1,f2'`, dates, an id or `none`, JSON files, the server URL). Each is a clap
//! value parser, so a malformed value is a usage error (exit code 2) before anything is sent.

use serde_json::{json, Value};
use std::path::Path;

/// Largest JSON file read for `--file` or `--model-file`.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The admin API's base URL: `http://host[:port][/prefix]`, without a trailing `/`.
pub fn server(text: &str) -> Result<String, String> {
    let uri: hyper::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() && uri.query().is_none() => Ok(text.trim_end_matches('/').to_owned()),
        Some("https") => Err("https is not supported yet: use http://".into()),
        _ => Err("expected http://HOST[:PORT]".into()),
    }
}

/// A time for the API: RFC 3339 as given, or a date `YYYY-MM-DD`, meaning its first instant
/// (`T00:00:00Z`). Anything else is passed on for the server to judge.
pub fn time(text: &str) -> Result<String, String> {
    let is_date = text.len() == 10
        && text.char_indices().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
    Ok(if is_date { format!("{text}T00:00:00Z") } else { text.to_owned() })
}

/// The end of a license's validity: a [`time`], or `never` (`null`: perpetual).
pub fn until(text: &str) -> Result<Value, String> {
    if text.eq_ignore_ascii_case("never") {
        return Ok(Value::Null);
    }
    time(text).map(Value::String)
}

/// An object's id, or `none` (`null`: no object, as a license taken out of its entitlement).
pub fn id_or_none(text: &str) -> Result<Value, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    Ok(Value::String(text.to_owned()))
}

/// `KEY=VALUE`, a license property.
pub fn property(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("expected KEY=VALUE")?;
    if key.is_empty() {
        return Err("expected KEY=VALUE with a KEY".into());
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `KEY=JSON`, a license model field, as `max_hardware=1` or `session_anchors=["hw"]`.
pub fn model_field(text: &str) -> Result<(String, Value), String> {
    let (key, value) = property(text).map_err(|_| "expected KEY=JSON, as max_hardware=1".to_owned())?;
    let value = serde_json::from_str(&value).map_err(|e| format!("the value of {key} is not JSON ({e})"))?;
    Ok((key, value))
}

/// `NAME:FEATURE,FEATURE...`, a product tier (`NAME:` for one without features of its own).
pub fn tier(text: &str) -> Result<Value, String> {
    let (name, features) = text.split_once(':').unwrap_or((text, ""));
    if name.is_empty() {
        return Err("expected NAME:FEATURE,FEATURE...".into());
    }
    let features: Vec<&str> = features.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    Ok(json!({"name": name, "features": features}))
}

/// The JSON in the file at `path` (a JSON object).
pub fn json_file(path: &str) -> Result<Value, String> {
    let size = std::fs::metadata(Path::new(path)).map_err(|e| format!("{path}: {e}"))?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("{path}: larger than {MAX_FILE_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(object)) => Ok(Value::Object(object)),
        Ok(_) => Err(format!("{path}: expected a JSON object")),
        Err(e) => Err(format!("{path}: not JSON ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_a_plain_http_url() {
        assert_eq!(server("http://127.0.0.1:8080/").as_deref(), Ok("http://127.0.0.1:8080"));
        assert_eq!(server("http://licenses.example/leasehold").as_deref(), Ok("http://licenses.example/leasehold"));
        assert!(server("https://licenses.example").unwrap_err().contains("https"));
        assert!(server("127.0.0.1:8080").is_err());
    }

    #[test]
    fn a_date_is_its_first_instant_and_never_is_null() {
        assert_eq!(time("2027-12-31").as_deref(), Ok("2027-12-31T00:00:00Z"));
        assert_eq!(time("2027-12-31T12:00:00+02:00").as_deref(), Ok("2027-12-31T12:00:00+02:00"));
        assert_eq!(until("never"), Ok(Value::Null));
        assert_eq!(until("2027-01-01"), Ok(json!("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn none_is_null_and_an_id_is_itself() {
        assert_eq!(id_or_none("none"), Ok(Value::Null));
        assert_eq!(id_or_none("0191f1c2-7e4b-7c3a"), Ok(json!("0191f1c2-7e4b-7c3a")));
    }

    #[test]
    fn pairs_tiers_and_model_fields_are_read_or_refused() {
        assert_eq!(property("lang=en=GB"), Ok(("lang".into(), "en=GB".into())));
        assert!(property("lang").is_err());
        assert_eq!(model_field(r#"session_anchors=["hw"]"#), Ok(("session_anchors".into(), json!(["hw"]))));
        assert!(model_field("max_hardware=one").is_err());
        assert_eq!(tier("Pro:render, simulate"), Ok(json!({"name": "Pro", "features": ["render", "simulate"]})));
        assert_eq!(tier("Empty"), Ok(json!({"name": "Empty", "features": []})));
        assert!(tier(":render").is_err());
    }
}
