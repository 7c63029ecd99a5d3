//! Validated payloads: an event's first argument checked before its handler runs
//! (FoalTS's `@ValidatePayload`). A payload that fails is answered with
//! `{"status":"error","error":{"code":"VALIDATION_PAYLOAD_ERROR","payload":[..]}}`,
//! the errors in Ajv's shape, and the handler never runs.

use super::*;

/// The code of a payload that failed validation.
pub const VALIDATION_PAYLOAD_ERROR: &str = "VALIDATION_PAYLOAD_ERROR";

/// Checks an event's first argument before its handler runs.
///
/// On failure it returns the errors as Ajv reports them (`instancePath`,
/// `schemaPath`, `keyword`, `params`, `message`), which the client gets as the
/// `payload` of a `VALIDATION_PAYLOAD_ERROR`.
pub trait Validate: Send + Sync + 'static {
    /// Checks `value` (`null` when the event had no argument).
    fn validate(&self, value: &Value) -> Result<(), Vec<Value>>;
}

/// One error in Ajv's shape.
pub fn ajv_error(
    instance_path: &str,
    schema_path: &str,
    keyword: &str,
    params: Value,
    message: impl Into<String>,
) -> Value {
    let mut m = Map::new();
    m.insert("instancePath".into(), Value::from(instance_path));
    m.insert("schemaPath".into(), Value::from(schema_path));
    m.insert("keyword".into(), Value::from(keyword));
    m.insert("params".into(), params);
    m.insert("message".into(), message.into().into());
    Value::Object(m)
}

/// Validation by a serde type: the payload must deserialise into `T`. A failure is
/// one error with keyword `type` and serde's message (serde does not say where, so
/// `instancePath` is empty). A JSON Schema (`Schema`, feature `jsonschema`) gives
/// Ajv's exact errors.
pub struct Typed<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Typed<T> {
    /// Validation into `T`.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for Typed<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Typed<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned + 'static> Validate for Typed<T> {
    fn validate(&self, value: &Value) -> Result<(), Vec<Value>> {
        T::deserialize(value).map(drop).map_err(|e| {
            let message = e.to_string();
            vec![ajv_error(
                "",
                "#",
                "type",
                Value::Object(Map::new()),
                message,
            )]
        })
    }
}

#[cfg(feature = "jsonschema")]
pub use schema::{Schema, SchemaError};

#[cfg(feature = "jsonschema")]
mod schema {
    use super::*;
    use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};

    /// A JSON Schema (drafts 4 to 2020-12, with the `jsonschema` crate) whose errors
    /// are reported as Ajv reports them: the same `keyword`, `params`, `message` and
    /// paths, for the keywords Ajv has. Like Ajv's default (`allErrors: false`, as
    /// FoalTS configures it), only the first error is reported unless
    /// [`all_errors`](Self::all_errors) is set. Types are not coerced.
    pub struct Schema {
        validator: jsonschema::Validator,
        all_errors: bool,
    }

    /// A schema that cannot be compiled.
    #[derive(Debug)]
    pub struct SchemaError(String);

    impl fmt::Display for SchemaError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "invalid JSON Schema: {}", self.0)
        }
    }

    impl std::error::Error for SchemaError {}

    impl fmt::Debug for Schema {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Schema")
                .field("all_errors", &self.all_errors)
                .finish_non_exhaustive()
        }
    }

    impl Schema {
        /// Compiles `schema` (its draft from `$schema`, 2020-12 by default). Remote
        /// `$ref`s are not fetched.
        pub fn new(schema: &Value) -> Result<Self, SchemaError> {
            jsonschema::validator_for(schema)
                .map(|validator| Self {
                    validator,
                    all_errors: false,
                })
                .map_err(|e| SchemaError(e.to_string()))
        }

        /// Reports every error, not only the first (Ajv's `allErrors: true`).
        pub fn all_errors(mut self, all: bool) -> Self {
            self.all_errors = all;
            self
        }

        /// The errors of `value` in Ajv's shape (none if it is valid).
        pub fn errors(&self, value: &Value) -> Vec<Value> {
            let errors = self.validator.iter_errors(value);
            let take = if self.all_errors { usize::MAX } else { 1 };
            errors
                .flat_map(|e| to_ajv(&e))
                .take(take)
                .collect::<Vec<_>>()
        }
    }

    impl Validate for Schema {
        fn validate(&self, value: &Value) -> Result<(), Vec<Value>> {
            if self.validator.is_valid(value) {
                return Ok(());
            }
            Err(self.errors(value))
        }
    }

    fn type_name(t: &jsonschema::JsonType) -> String {
        t.to_string()
    }

    /// One `jsonschema` error as Ajv's error objects (Ajv reports one per extra
    /// property where `jsonschema` reports them together).
    fn to_ajv(e: &jsonschema::ValidationError<'_>) -> Vec<Value> {
        let path = e.instance_path().as_str().to_owned();
        let schema_path = format!("#{}", e.schema_path().as_str());
        let one = |keyword: &str, params: Value, message: String| {
            vec![ajv_error(&path, &schema_path, keyword, params, message)]
        };
        let limit = |n: &dyn fmt::Display| -> Value {
            serde_json::from_str(&n.to_string()).unwrap_or(Value::Null)
        };
        // Ajv's limitLength, limitItems and limitProperties share one message, which
        // does not agree in number: "fewer than 1 characters".
        let count = |keyword: &str, comp: &str, n: u64, unit: &str| {
            one(
                keyword,
                json_obj([("limit", n.into())]),
                format!("must NOT have {comp} than {n} {unit}"),
            )
        };
        match e.kind() {
            Kind::Type { kind } => {
                let types = match kind {
                    TypeKind::Single(t) => type_name(t),
                    TypeKind::Multiple(set) => set
                        .iter()
                        .map(|t| type_name(&t))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                one("type", json_obj([("type", types.clone().into())]), {
                    format!("must be {types}")
                })
            }
            Kind::Required { property } => {
                let name = property.as_str().unwrap_or_default().to_owned();
                one(
                    "required",
                    json_obj([("missingProperty", name.clone().into())]),
                    format!("must have required property '{name}'"),
                )
            }
            Kind::AdditionalProperties { unexpected } => unexpected
                .iter()
                .map(|p| {
                    ajv_error(
                        &path,
                        &schema_path,
                        "additionalProperties",
                        json_obj([("additionalProperty", p.as_str().into())]),
                        "must NOT have additional properties",
                    )
                })
                .collect(),
            Kind::MinLength { limit: n } => count("minLength", "fewer", *n, "characters"),
            Kind::MaxLength { limit: n } => count("maxLength", "more", *n, "characters"),
            Kind::MinItems { limit: n } => count("minItems", "fewer", *n, "items"),
            Kind::MaxItems { limit: n } => count("maxItems", "more", *n, "items"),
            Kind::MinProperties { limit: n } => count("minProperties", "fewer", *n, "properties"),
            Kind::MaxProperties { limit: n } => count("maxProperties", "more", *n, "properties"),
            Kind::Minimum { limit: n } => compare(&path, &schema_path, "minimum", ">=", n),
            Kind::Maximum { limit: n } => compare(&path, &schema_path, "maximum", "<=", n),
            Kind::ExclusiveMinimum { limit: n } => {
                compare(&path, &schema_path, "exclusiveMinimum", ">", n)
            }
            Kind::ExclusiveMaximum { limit: n } => {
                compare(&path, &schema_path, "exclusiveMaximum", "<", n)
            }
            Kind::MultipleOf { multiple_of } => {
                let n = limit(multiple_of);
                one(
                    "multipleOf",
                    json_obj([("multipleOf", n.clone())]),
                    format!("must be multiple of {n}"),
                )
            }
            Kind::Pattern { pattern } => one(
                "pattern",
                json_obj([("pattern", pattern.as_str().into())]),
                format!("must match pattern \"{pattern}\""),
            ),
            Kind::Format { format } => one(
                "format",
                json_obj([("format", format.as_str().into())]),
                format!("must match format \"{format}\""),
            ),
            Kind::Enum { options } => one(
                "enum",
                json_obj([("allowedValues", (**options).clone())]),
                "must be equal to one of the allowed values".into(),
            ),
            Kind::Constant { expected_value } => one(
                "const",
                json_obj([("allowedValue", (**expected_value).clone())]),
                "must be equal to constant".into(),
            ),
            Kind::UniqueItems => one(
                "uniqueItems",
                Value::Object(Map::new()),
                "must NOT have duplicate items".into(),
            ),
            Kind::AnyOf { .. } => one(
                "anyOf",
                Value::Object(Map::new()),
                "must match a schema in anyOf".into(),
            ),
            Kind::OneOfNotValid { .. } | Kind::OneOfMultipleValid { .. } => one(
                "oneOf",
                json_obj([("passingSchemas", Value::Null)]),
                "must match exactly one schema in oneOf".into(),
            ),
            Kind::Not { .. } => one("not", Value::Object(Map::new()), "must NOT be valid".into()),
            Kind::FalseSchema => one(
                "false schema",
                Value::Object(Map::new()),
                "boolean schema is false".into(),
            ),
            Kind::Contains => one(
                "contains",
                Value::Object(Map::new()),
                "must contain at least 1 valid item(s)".into(),
            ),
            Kind::AdditionalItems { limit: n } => {
                count("additionalItems", "more", *n as u64, "items")
            }
            Kind::UnevaluatedProperties { unexpected } => unexpected
                .iter()
                .map(|p| {
                    ajv_error(
                        &path,
                        &schema_path,
                        "unevaluatedProperties",
                        json_obj([("unevaluatedProperty", p.as_str().into())]),
                        "must NOT have unevaluated properties",
                    )
                })
                .collect(),
            Kind::UnevaluatedItems { .. } => one(
                "unevaluatedItems",
                Value::Object(Map::new()),
                "must NOT have unevaluated items".into(),
            ),
            Kind::PropertyNames { .. } => one(
                "propertyNames",
                Value::Object(Map::new()),
                "property name must be valid".into(),
            ),
            // Keywords Ajv has no message of its own for: the keyword and
            // `jsonschema`'s text.
            other => one(other.keyword(), Value::Object(Map::new()), e.to_string()),
        }
    }

    fn compare(path: &str, schema_path: &str, keyword: &str, op: &str, n: &Value) -> Vec<Value> {
        vec![ajv_error(
            path,
            schema_path,
            keyword,
            json_obj([("comparison", op.into()), ("limit", n.clone())]),
            format!("must be {op} {n}"),
        )]
    }

    fn json_obj<const N: usize>(fields: [(&str, Value); N]) -> Value {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}
