//! Bounds of the document that no field attribute can state: the shape of every `{id}` path
//! parameter, and an endpoint's custom headers. Each is taken from the rule the server
//! enforces (`herald_domain`'s id parsing and `custom_headers`), so the document calls valid
//! what the server accepts, and Schemathesis can hold it to that.

use herald_domain::custom_headers::{MAX_HEADERS, MAX_NAME_CHARS, MAX_VALUE_CHARS};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};

/// A lowercase, hyphenated UUID: the only spelling of an id the server reads (`ids.rs`); any
/// other text names nothing and answers 404.
pub(crate) const UUID_PATTERN: &str =
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
const UUID_CHARS: usize = 36;

/// An HTTP token (RFC 9110), the characters of a header name.
const HEADER_NAME_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/// Printable ASCII, not starting or ending with a space (empty is allowed).
const HEADER_VALUE_PATTERN: &str = "^([!-~]([ -~]*[!-~])?)?$";

/// Gives every path parameter the UUID shape: every `{id}` of the API is one.
pub(super) fn path_ids(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                if parameter.parameter_in == ParameterIn::Path {
                    parameter.schema = Some(RefOr::T(uuid_schema()));
                }
            }
        }
    }
}

fn uuid_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(UUID_PATTERN))
        .min_length(Some(UUID_CHARS))
        .max_length(Some(UUID_CHARS))
        .build()
        .into()
}

/// `headers` of an update: an object, never `null` (`{}` removes every header). `schema_with`
/// replaces the field's whole schema, its description too, so the description is here.
pub(crate) fn custom_headers_schema() -> Schema {
    headers_object(
        SchemaType::Type(Type::Object),
        "The new, whole set of custom headers; a value of `\"<redacted>\"` keeps the stored value \
         of that header, so a read set can be sent back with one value changed.",
    )
}

/// `headers` of a create: an object, or `null` for none.
pub(crate) fn custom_headers_or_null_schema() -> Schema {
    headers_object(
        SchemaType::from_iter([Type::Object, Type::Null]),
        "Up to 20 headers sent with every delivery (e.g. an API key a gateway demands): names \
         are HTTP tokens of at most 64 characters, not ones Herald sets; values at most 1,024 \
         printable characters. Stored sealed; answers show every value as `\"<redacted>\"`.",
    )
}

/// Names and values as `custom_headers.rs` checks them. What a pattern cannot say is said in
/// the description and still refused: names Herald sets itself, a name given twice in
/// different case, and `"<redacted>"` where no value is stored.
fn headers_object(schema_type: SchemaType, description: &str) -> Schema {
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_CHARS))
        .pattern(Some(HEADER_NAME_PATTERN));
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_VALUE_CHARS))
        .pattern(Some(HEADER_VALUE_PATTERN));
    ObjectBuilder::new()
        .schema_type(schema_type)
        .description(Some(description))
        .max_properties(Some(MAX_HEADERS))
        .property_names(Some(Schema::Object(name.build())))
        .additional_properties(Some(value))
        .build()
        .into()
}
