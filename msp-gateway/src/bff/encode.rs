//! Encoding the shaped response: JSON, MessagePack (`rmp-serde`, maps
//! keyed by field name) or CBOR (`ciborium`).

use super::config::Format;
use bytes::Bytes;
use serde_json::Value;

/// The response body in `format`; `Err` says why it could not be encoded.
pub(crate) fn encode(value: &Value, format: Format) -> Result<Bytes, String> {
    match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        Format::Msgpack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        Format::Cbor => {
            let mut out = Vec::new();
            ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
            Ok(out)
        }
    }
    .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_format_round_trips() {
        let v = json!({"id": 7, "name": "ü", "tags": ["a"], "price": 1.5, "n": null});
        let back: Value = serde_json::from_slice(&encode(&v, Format::Json).expect("test value"))
            .expect("test value");
        assert_eq!(back, v);
        let back: Value = rmp_serde::from_slice(&encode(&v, Format::Msgpack).expect("test value"))
            .expect("test value");
        assert_eq!(back, v);
        let back: Value = ciborium::from_reader(&encode(&v, Format::Cbor).expect("test value")[..])
            .expect("test value");
        assert_eq!(back, v);
    }
}
