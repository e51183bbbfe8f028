//! Protobuf responses: a profile's [`ProtobufSchema`] loaded once (the
//! descriptor set read, the message looked up, the profile's `allow`
//! paths checked against it), then each shaped JSON response encoded as
//! that message through the proto3 JSON mapping (prost-reflect).

use super::config::ProtobufSchema;
use super::error::EncodeError;
use super::json::FieldPath;
use bytes::Bytes;
use http::HeaderValue;
use prost_reflect::prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor};
use serde_json::Value;

/// How many message names a "no such message" problem lists.
const LISTED: usize = 8;

/// A profile's protobuf message, loaded. `MessageDescriptor` shares its
/// pool through an `Arc`, so the aggregate's clones share one copy.
#[derive(Debug)]
pub(crate) struct Schema {
    message: MessageDescriptor,
    content_type: HeaderValue,
}

/// Why a schema could not be loaded: the field of [`ProtobufSchema`] at
/// fault (`descriptor_set` or `message`) and what is wrong.
pub(crate) type SchemaProblem = (&'static str, String);

impl Schema {
    /// Reads the descriptor set and finds the message.
    pub(crate) fn load(schema: &ProtobufSchema) -> Result<Schema, SchemaProblem> {
        let path = schema.descriptor_set.display();
        let bytes = std::fs::read(&schema.descriptor_set)
            .map_err(|e| ("descriptor_set", format!("{path}: cannot be read: {e}")))?;
        let pool = DescriptorPool::decode(bytes.as_slice()).map_err(|e| {
            (
                "descriptor_set",
                format!(
                    "{path}: not a protobuf FileDescriptorSet ({e}); make one with `protoc --include_imports --descriptor_set_out=FILE your.proto`"
                ),
            )
        })?;
        let Some(message) = pool.get_message_by_name(&schema.message) else {
            let known: Vec<String> = pool
                .all_messages()
                .filter(|m| !m.is_map_entry() && !m.full_name().starts_with("google.protobuf."))
                .take(LISTED)
                .map(|m| m.full_name().to_owned())
                .collect();
            let has = if known.is_empty() {
                "it describes no message: is it a descriptor set?".to_owned()
            } else {
                format!("it has {}", known.join(", "))
            };
            return Err((
                "message",
                format!("no message {:?} in {path} ({has})", schema.message),
            ));
        };
        let content_type = HeaderValue::from_str(&format!(
            "application/protobuf; proto={}",
            message.full_name()
        ))
        .map_err(|_| {
            (
                "message",
                format!("{:?} cannot be a media type parameter", message.full_name()),
            )
        })?;
        Ok(Schema {
            message,
            content_type,
        })
    }

    /// The message's full name.
    pub(crate) fn name(&self) -> &str {
        self.message.full_name()
    }

    /// `application/protobuf; proto=<message>`.
    pub(crate) fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }

    /// `Err` when the message has no field at `path` (by proto or JSON
    /// name; repeated fields traversed like arrays). A path stops being
    /// checked at a map or a `google.protobuf` well-known message
    /// (`Struct`, `Any`…), whose JSON keys are free.
    pub(crate) fn check_path(&self, path: &FieldPath) -> Result<(), String> {
        let mut message = self.message.clone();
        let segments = path.segments();
        for (i, seg) in segments.iter().enumerate() {
            let field = message
                .get_field_by_name(seg)
                .or_else(|| message.get_field_by_json_name(seg))
                .ok_or_else(|| {
                    format!(
                        "{:?}: message {} has no field {seg:?}",
                        segments.join("."),
                        message.full_name()
                    )
                })?;
            if i + 1 == segments.len() {
                break;
            }
            match field.kind() {
                Kind::Message(_) if field.is_map() => break,
                Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => break,
                Kind::Message(m) => message = m,
                other => {
                    return Err(format!(
                        "{:?}: field {seg:?} of {} is a {other:?}, which has no fields",
                        segments.join("."),
                        message.full_name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The shaped response as this message: the proto3 JSON mapping
    /// (field names or JSON names, 64-bit integers as numbers or strings,
    /// enums by name or number, `null` as the default), fields the
    /// message lacks left out — like a proto3 JSON parser with
    /// `ignore_unknown_fields`. A value of the wrong type is an
    /// [`EncodeError::Schema`].
    pub(crate) fn encode(&self, value: &Value) -> Result<Bytes, EncodeError> {
        let options = DeserializeOptions::new().deny_unknown_fields(false);
        let message =
            DynamicMessage::deserialize_with_options(self.message.clone(), value, &options)
                .map_err(|e| EncodeError::Schema {
                    message: self.name().to_owned(),
                    reason: e.to_string(),
                })?;
        Ok(Bytes::from(message.encode_to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::prost::Message;
    use prost_reflect::prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        field_descriptor_proto::{Label, Type},
    };
    use serde_json::json;

    fn field(name: &str, number: i32, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(ty as i32),
            type_name: type_name.map(Into::into),
            json_name: None,
            ..Default::default()
        }
    }

    /// `t.Outer { int32 id = 1; t.Inner inner = 2; }`, `t.Inner { string name = 1; }`.
    fn schema_file(dir: &std::path::Path) -> std::path::PathBuf {
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("t.proto".into()),
                package: Some("t".into()),
                syntax: Some("proto3".into()),
                message_type: vec![
                    DescriptorProto {
                        name: Some("Outer".into()),
                        field: vec![
                            field("id", 1, Type::Int32, None),
                            field("inner", 2, Type::Message, Some(".t.Inner")),
                        ],
                        ..Default::default()
                    },
                    DescriptorProto {
                        name: Some("Inner".into()),
                        field: vec![field("name", 1, Type::String, None)],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        };
        let path = dir.join("t.binpb");
        std::fs::write(&path, set.encode_to_vec()).expect("test value");
        path
    }

    #[test]
    fn paths_are_checked_through_nested_messages() {
        let dir = tempfile::tempdir().expect("test value");
        let schema =
            Schema::load(&ProtobufSchema::new(schema_file(dir.path()), "t.Outer")).expect("loads");
        let check = |p: &str| schema.check_path(&FieldPath::parse(p).expect("test value"));
        assert_eq!(check("id"), Ok(()));
        assert_eq!(check("inner.name"), Ok(()));
        assert!(
            check("inner.nope")
                .expect_err("no field")
                .contains("t.Inner has no field")
        );
        assert!(check("id.x").expect_err("scalar").contains("no fields"));
        assert_eq!(schema.content_type(), "application/protobuf; proto=t.Outer");
    }

    #[test]
    fn a_wrong_type_is_a_schema_error_and_unknown_fields_are_left_out() {
        let dir = tempfile::tempdir().expect("test value");
        let schema =
            Schema::load(&ProtobufSchema::new(schema_file(dir.path()), "t.Outer")).expect("loads");
        let bytes = schema
            .encode(&json!({"id": 7, "inner": {"name": "x"}, "extra": [1]}))
            .expect("fits");
        let back = DynamicMessage::decode(schema.message.clone(), bytes).expect("test value");
        assert_eq!(back.get_field_by_name("id").expect("id").as_i32(), Some(7));
        let err = schema
            .encode(&json!({"id": {"no": 1}}))
            .expect_err("an object is no int32");
        assert!(matches!(err, EncodeError::Schema { .. }), "{err}");
    }

    #[test]
    fn load_names_the_field_at_fault() {
        let dir = tempfile::tempdir().expect("test value");
        let missing = Schema::load(&ProtobufSchema::new(dir.path().join("none"), "t.Outer"));
        assert_eq!(missing.expect_err("missing").0, "descriptor_set");
        let text = dir.path().join("t.proto");
        std::fs::write(&text, "syntax = \"proto3\"; message X {}").expect("test value");
        assert_eq!(
            Schema::load(&ProtobufSchema::new(&text, "X"))
                .expect_err("not binary")
                .0,
            "descriptor_set"
        );
        let good = schema_file(dir.path());
        let (field, msg) =
            Schema::load(&ProtobufSchema::new(good, "t.Nope")).expect_err("no message");
        assert_eq!(field, "message");
        assert!(msg.contains("it has t.Outer, t.Inner"), "{msg}");
    }
}
