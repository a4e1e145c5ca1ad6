//! The JSON Schemas of the values the contract's documents share, each saying everything the
//! service checks of them, so that a request valid against the OpenAPI document is refused only
//! by a business rule (the registry's codes, dates in order, one territory change…), never by
//! a shape the document did not tell.
//!
//! The codes of the configured registries (territories, stages, providers) are not known here:
//! the HTTP layer adds them as `enum`s to the document it serves
//! (`filiera_http::openapi::describe_registries`). These schemas carry the syntax every code
//! of a registry has.

use std::borrow::Cow;

use filiera_domain::{MAX_TEXT_CHARS, TEXT_PATTERN};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat};
use utoipa::openapi::{KnownFormat, Ref, RefOr, Type};
use utoipa::{PartialSchema, ToSchema};

/// The syntax of a territory code (`filiera_domain::TerritoryCode`).
pub const TERRITORY_CODE_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// The syntax of a stage code (`filiera_domain::StageCode`).
pub const STAGE_CODE_PATTERN: &str = "^[a-z0-9_]{1,64}$";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A schema that is a named component of the document.
macro_rules! named {
    ($ty:ident, $name:literal) => {
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

/// A territory code of the registry (`GET /v1/territories`).
pub struct RegisteredTerritory;

impl PartialSchema for RegisteredTerritory {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "A territory code of the registry (`GET /v1/territories`); codes outside it are \
                 refused (422 `unknown_territory`).",
            ))
            .pattern(Some(TERRITORY_CODE_PATTERN))
            .min_length(Some(1))
            .max_length(Some(64))
            .examples(["LOM-BG"])
            .into()
    }
}
named!(RegisteredTerritory, "RegisteredTerritory");

/// A stage code of the catalogue (`GET /v1/stages`).
pub struct CataloguedStage;

impl PartialSchema for CataloguedStage {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "A stage code of the catalogue (`GET /v1/stages`); codes outside it are refused \
                 (422 `unknown_stage`).",
            ))
            .pattern(Some(STAGE_CODE_PATTERN))
            .min_length(Some(1))
            .max_length(Some(64))
            .examples(["internship"])
            .into()
    }
}
named!(CataloguedStage, "CataloguedStage");

/// Who runs a stage: a provider code when the configuration lists providers, otherwise any
/// text.
pub struct ProviderName;

impl PartialSchema for ProviderName {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "Who runs the stage: a code of `GET /v1/providers` when the configuration lists \
                 providers (others are refused, 422 `unknown_provider`), otherwise any text that \
                 is not only white space, without control characters, at most 500 characters.",
            ))
            .pattern(Some(TEXT_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MAX_TEXT_CHARS))
            .examples(["coop.sociale.alfa"])
            .into()
    }
}
named!(ProviderName, "ProviderName");

/// A free text of the audit trail (an undo's `reason`).
pub struct Text;

impl PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "Free text: not only white space, no control characters, at most 500 characters \
                 (leading and trailing white space is dropped).",
            ))
            .pattern(Some(TEXT_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MAX_TEXT_CHARS))
            .into()
    }
}
named!(Text, "Text");

/// A date, `YYYY-MM-DD`, as a query parameter takes it.
pub struct CalendarDate;

impl PartialSchema for CalendarDate {
    fn schema() -> RefOr<Schema> {
        string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .description(Some("A calendar date, `YYYY-MM-DD`."))
            .examples(["2025-03-01"])
            .into()
    }
}
named!(CalendarDate, "CalendarDate");

/// `known_at`: an RFC 3339 instant, or a date meaning the end of that UTC day.
pub struct KnownAt;

impl PartialSchema for KnownAt {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
            .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
            .description(Some(
                "An RFC 3339 instant (`2025-03-01T12:00:00Z`), or a date `YYYY-MM-DD` meaning the \
                 end of that UTC day.",
            ))
            .examples(["2025-03-01T12:00:00Z"])
            .into()
    }
}
named!(KnownAt, "KnownAt");

/// The outcomes a client may give when exiting a stage (the others are written by the service).
pub struct ManualExitOutcome;

impl PartialSchema for ManualExitOutcome {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "`completed` or `interrupted`: `moved_on` and `pathway_closed` are written by the \
                 service itself.",
            ))
            .enum_values(Some(["completed", "interrupted"]))
            .into()
    }
}
named!(ManualExitOutcome, "ManualExitOutcome");

/// The services that took part in an assessment: at least one, none twice.
pub struct Team;

impl PartialSchema for Team {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(RefOr::Ref(Ref::from_schema_name(
                filiera_domain::TeamMember::name(),
            )))
            .min_items(Some(1))
            .max_items(Some(filiera_domain::TeamMember::ALL.len()))
            .unique_items(true)
            .description(Some(
                "The services that took part: at least one, none twice; at least two for a \
                 `multidisciplinary` assessment.",
            ))
            .into()
    }
}

impl ToSchema for Team {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Team")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            filiera_domain::TeamMember::name().into_owned(),
            filiera_domain::TeamMember::schema(),
        ));
    }
}
