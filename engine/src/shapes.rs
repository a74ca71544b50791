//! Which stored format's shapes are being encoded or decoded.
//!
//! Journals and snapshots are bincode, which is not self-describing: a field added to a stored
//! type changes its encoding. Every such field is marked `#[serde(default, with =
//! "crate::shapes::since_format_N")]` with the format `N` that added it: while a value of an older format is decoded (inside
//! [`in_format`] with that format's version), the field is read as absent, taking no bytes, and
//! gets its default; while an older format is encoded (tests that write what an older build
//! wrote), it is left out. Everywhere else, JSON included, the field is an ordinary field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;

/// The newest stored format: the one encoded and decoded outside [`in_format`].
pub const NEWEST_FORMAT: u8 = 9;

thread_local! {
    static FORMAT: Cell<u8> = const { Cell::new(NEWEST_FORMAT) };
}

/// Runs `code` (an encode or decode) with the shapes of stored format `version` on this thread.
pub fn in_format<T>(version: u8, code: impl FnOnce() -> T) -> T {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORMAT.with(|f| f.set(self.0));
        }
    }
    let _restore = Restore(FORMAT.with(|f| f.replace(version)));
    code()
}

fn current_format() -> u8 {
    FORMAT.with(Cell::get)
}

/// Declares the module of a field that stored formats hold from version `$version` on.
macro_rules! since_format {
    ($(#[$doc:meta])* $name:ident, $version:literal) => {
        $(#[$doc])*
        pub mod $name {
            use super::*;

            /// Writes the field, unless an older format is being written.
            pub fn serialize<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
                if current_format() < $version {
                    serializer.serialize_unit()
                } else {
                    value.serialize(serializer)
                }
            }

            /// Reads the field, or gives its default when an older format is being read.
            pub fn deserialize<'de, T: Deserialize<'de> + Default, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<T, D::Error> {
                if current_format() < $version {
                    Ok(T::default())
                } else {
                    T::deserialize(deserializer)
                }
            }
        }
    };
}

since_format!(
    /// A field that stored formats hold from version 3 on.
    since_format_3,
    3
);
since_format!(
    /// A field that stored formats hold from version 4 on.
    since_format_4,
    4
);
since_format!(
    /// A field that stored formats hold from version 5 on.
    since_format_5,
    5
);
since_format!(
    /// A field that stored formats hold from version 6 on.
    since_format_6,
    6
);
since_format!(
    /// A field that stored formats hold from version 7 on.
    since_format_7,
    7
);
since_format!(
    /// A field that stored formats hold from version 8 on.
    since_format_8,
    8
);
since_format!(
    /// A field that stored formats hold from version 9 on.
    since_format_9,
    9
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Old {
        a: u32,
        b: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        a: u32,
        #[serde(default, with = "since_format_3")]
        added: Option<u64>,
        b: String,
    }

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
    }

    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard()).expect("decodes");
        assert_eq!(read, bytes.len(), "bytes left over");
        value
    }

    #[test]
    fn an_older_format_reads_and_writes_without_the_new_field() {
        let old = encode(&vec![Old { a: 7, b: "x".into() }, Old { a: 8, b: "y".into() }]);
        let read: Vec<New> = in_format(2, || decode(&old));
        assert_eq!(read, vec![New { a: 7, added: None, b: "x".into() }, New { a: 8, added: None, b: "y".into() }]);
        let written = in_format(2, || encode(&read));
        assert_eq!(written, old, "writing format 2 gives what format 2 wrote");
    }

    #[test]
    fn the_newest_format_and_json_carry_the_new_field() {
        let new = New { a: 1, added: Some(5), b: "z".into() };
        assert_eq!(decode::<New>(&encode(&new)), new);
        let json = serde_json::to_string(&new).expect("json");
        assert_eq!(serde_json::from_str::<New>(&json).expect("json"), new);
        let without: New = serde_json::from_str(r#"{"a":1,"b":"z"}"#).expect("a missing field defaults");
        assert_eq!(without.added, None);
        assert_eq!(current_format(), NEWEST_FORMAT, "in_format restores the format");
    }
}
