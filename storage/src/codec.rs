//! The one place that turns values into bytes and back.
//!
//! Everything Cairn writes to disk or sends between peers goes through
//! [`encode`] and [`decode`]. The format is bincode 2 (serde mode, standard
//! config), prefixed by a format version byte so that a future format can be
//! recognised and migrated. Nothing else in the workspace may call bincode: a
//! swap to another serde format stays a change to this file alone.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version byte written in front of every encoded value.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be turned into a value (or a value into bytes).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    /// The value could not be serialized.
    #[error("encode: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    #[error("decode: {0}")]
    Decode(String),
    /// The bytes were written by a format this build does not know.
    #[error("unknown format version {0} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    /// Nothing to decode.
    #[error("decode: empty input")]
    Empty,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` with the current format version byte in front.
///
/// The value is measured first and then written once into a buffer of
/// exactly its size: a log entry carrying a batch of writes or an artifact
/// would otherwise be copied on every doubling of a growing buffer and once
/// more behind the version byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let encode_err = |e: bincode::error::EncodeError| CodecError::Encode(e.to_string());
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config()).map_err(encode_err)?;
    let mut out = Vec::with_capacity(1 + size.bytes_written);
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(encode_err)?;
    Ok(out)
}

/// Decodes bytes produced by [`encode`], rejecting unknown versions and
/// trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes",
            body.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: String,
        n: u64,
        body: Vec<u8>,
        tag: Option<String>,
    }

    #[test]
    fn round_trip_preserves_value() {
        let v = Sample {
            id: "a:b".into(),
            n: u64::MAX,
            body: vec![0, 1, 255],
            tag: None,
        };
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        // Measured first, so the buffer holds exactly the encoding.
        assert_eq!(bytes.capacity(), bytes.len());
        assert_eq!(
            &bytes[1..],
            bincode::serde::encode_to_vec(&v, config())
                .unwrap()
                .as_slice()
        );
        assert_eq!(decode::<Sample>(&bytes).unwrap(), v);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut bytes = encode(&7u64).unwrap();
        bytes[0] = 99;
        assert!(matches!(
            decode::<u64>(&bytes),
            Err(CodecError::UnknownVersion(99))
        ));
    }

    #[test]
    fn trailing_and_truncated_bytes_are_rejected() {
        let mut bytes = encode(&"hello".to_string()).unwrap();
        bytes.push(0);
        assert!(decode::<String>(&bytes).is_err());
        let bytes = encode(&"hello".to_string()).unwrap();
        assert!(decode::<String>(&bytes[..bytes.len() - 1]).is_err());
        assert!(matches!(decode::<String>(&[]), Err(CodecError::Empty)));
    }
}
