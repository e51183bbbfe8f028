//! Encoding the shaped response: JSON, MessagePack (`rmp-serde`, maps
//! keyed by field name), CBOR (`ciborium`) or the profile's protobuf
//! message (`protobuf.rs`).

use super::config::Format;
use super::error::EncodeError;
use super::protobuf::Schema;
use bytes::Bytes;
use serde_json::Value;

/// The response body in `format` (`schema`: the profile's protobuf
/// message, which the negotiation guarantees for [`Format::Protobuf`]).
pub(crate) fn encode(
    value: &Value,
    format: Format,
    schema: Option<&Schema>,
) -> Result<Bytes, EncodeError> {
    let failed = |e: &dyn std::fmt::Display| EncodeError::Serialize(e.to_string());
    match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| failed(&e)),
        Format::Msgpack => rmp_serde::to_vec_named(value).map_err(|e| failed(&e)),
        Format::Cbor => {
            let mut out = Vec::new();
            ciborium::into_writer(value, &mut out).map_err(|e| failed(&e))?;
            Ok(out)
        }
        Format::Protobuf => {
            return match schema {
                Some(schema) => schema.encode(value),
                None => Err(EncodeError::Serialize("no protobuf schema".into())),
            };
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
        let back: Value =
            serde_json::from_slice(&encode(&v, Format::Json, None).expect("test value"))
                .expect("test value");
        assert_eq!(back, v);
        let back: Value =
            rmp_serde::from_slice(&encode(&v, Format::Msgpack, None).expect("test value"))
                .expect("test value");
        assert_eq!(back, v);
        let back: Value =
            ciborium::from_reader(&encode(&v, Format::Cbor, None).expect("test value")[..])
                .expect("test value");
        assert_eq!(back, v);
    }
}
