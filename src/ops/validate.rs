//! Input rules shared by every entry point (HTTP and library).

use super::Error;

/// Longest id, key or name (bytes).
pub const MAX_ID_BYTES: usize = 256;

fn check_chars(what: &str, s: &str, extra: &[char]) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_ID_BYTES {
        return Err(Error::Invalid(format!(
            "{what} must be 1-{MAX_ID_BYTES} bytes, got {}",
            s.len()
        )));
    }
    if let Some(c) = s.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') || extra.contains(c))
    }) {
        let allowed = if extra.is_empty() { "" } else { " /" };
        return Err(Error::Invalid(format!(
            "{what} may only contain A-Z a-z 0-9 . _ : -{allowed} (found {c:?})"
        )));
    }
    Ok(())
}

/// An artifact, instance or conversation id, or a lock name: 1-256 bytes of `[A-Za-z0-9._:-]`.
pub fn id(what: &str, s: &str) -> Result<(), Error> {
    check_chars(what, s, &[])
}

/// A key/value key: like an id, `/` allowed too.
pub fn key(s: &str) -> Result<(), Error> {
    check_chars("key", s, &['/'])
}

/// A free-text field of at most `max` bytes.
pub fn len(what: &str, s: &str, max: usize) -> Result<(), Error> {
    if s.len() > max {
        return Err(Error::Invalid(format!("{what} is longer than {max} bytes")));
    }
    Ok(())
}

/// A duration in ms within `1..=max`.
pub fn duration(what: &str, ms: u64, max: u64) -> Result<(), Error> {
    if ms == 0 || ms > max {
        return Err(Error::Invalid(format!(
            "{what} must be 1-{max} ms, got {ms}"
        )));
    }
    Ok(())
}

/// A metadata value: a JSON object of at most `max` bytes serialized.
pub fn json_object(what: &str, v: &serde_json::Value, max: usize) -> Result<String, Error> {
    if !v.is_object() {
        return Err(Error::Invalid(format!("{what} must be a JSON object")));
    }
    let s = v.to_string();
    if s.len() > max {
        return Err(Error::TooLarge(format!(
            "{what} is {} bytes; the limit is {max}",
            s.len()
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_documented_charset_and_length() {
        assert!(id("id", "a.b_c:d-9").is_ok());
        assert!(id("id", &"x".repeat(256)).is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(257)] {
            assert!(id("id", bad).is_err(), "{bad}");
        }
        assert!(key("sessions/user-1").is_ok());
        assert!(key("a b").is_err());
    }

    #[test]
    fn durations_and_objects_are_bounded() {
        assert!(duration("ttl_ms", 1, 10).is_ok());
        assert!(duration("ttl_ms", 0, 10).is_err());
        assert!(duration("ttl_ms", 11, 10).is_err());
        assert!(json_object("meta", &serde_json::json!({"a": 1}), 100).is_ok());
        assert!(json_object("meta", &serde_json::json!([1]), 100).is_err());
        assert!(matches!(
            json_object("meta", &serde_json::json!({"a": "x".repeat(200)}), 100),
            Err(Error::TooLarge(_))
        ));
    }
}
