//! [`Person`]: the identity of a beneficiary, the only personal data filiera keeps, and its
//! validation.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Characters in an Italian fiscal code (*codice fiscale*) of a person.
const FISCAL_CODE_LEN: usize = 16;

/// Who a beneficiary is (docs/security.md). Stored only encrypted, in the vault; never in an event, a
/// log line or a metric. `Debug` redacts every field; the strings are wiped when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The *codice fiscale*; stored normalised (upper case, no spaces).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "RSSMRA80A01H501U",
            // [`FISCAL_CODE_PATTERN`] (a test checks they agree).
            pattern = "^[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[ABCDEHLMPRSTabcdehlmprst][0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]$"
        )
    )]
    pub fiscal_code: String,
    /// Given name(s), 1 to 200 characters, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            // `filiera_domain::TEXT_PATTERN` (a test checks they agree).
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub given_name: String,
    /// Family name(s), 1 to 200 characters, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            // `filiera_domain::TEXT_PATTERN` (a test checks they agree).
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub family_name: String,
    /// Date of birth, if known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "filiera_domain::date::deserialize_option"
    )]
    pub birth_date: Option<NaiveDate>,
}

/// A JSON Schema `pattern` of the fiscal codes [`normalise_fiscal_code`] accepts, written in
/// their normal form (no white space), in either case.
pub const FISCAL_CODE_PATTERN: &str = concat!(
    "^[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[ABCDEHLMPRSTabcdehlmprst]",
    "[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]$"
);

/// Why a [`Person`] (or a fiscal code to look up) was refused; names the field, never repeats
/// the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    /// The fiscal code does not have the shape of an Italian person's *codice fiscale*.
    #[error(
        "`fiscal_code` must be an Italian fiscal code: 6 letters, 2 digits, a month letter, \
         2 digits, a letter, 3 digits, a letter"
    )]
    FiscalCode,
    /// A name is empty (after trimming) or longer than [`MAX_NAME_CHARS`].
    #[error("`{field}` must be 1 to 200 characters long")]
    NameLength {
        /// `given_name` or `family_name`.
        field: &'static str,
    },
    /// A name holds a control character.
    #[error("`{field}` must not contain control characters")]
    NameControl {
        /// `given_name` or `family_name`.
        field: &'static str,
    },
}

impl PersonError {
    /// The JSON field refused, for a 422 problem document.
    pub fn field(&self) -> &'static str {
        match self {
            Self::FiscalCode => "fiscal_code",
            Self::NameLength { field } | Self::NameControl { field } => field,
        }
    }
}

impl Person {
    /// The person with its fiscal code normalised and its names trimmed, or why it cannot be
    /// stored.
    pub fn validated(mut self) -> Result<Self, PersonError> {
        self.fiscal_code = normalise_fiscal_code(&self.fiscal_code)?;
        self.given_name = valid_name("given_name", &self.given_name)?;
        self.family_name = valid_name("family_name", &self.family_name)?;
        Ok(self)
    }
}

/// A fiscal code as the vault keeps and indexes it: white space anywhere removed, upper case,
/// and checked against the shape of a person's *codice fiscale*: six letters (family and given
/// name), year, month letter, day, place (a letter and three digits), check letter. The digits
/// may be replaced by the letters L M N P Q R S T U V, as in codes re-issued for homonyms
/// (*omocodia*). The check letter itself is not verified.
pub fn normalise_fiscal_code(text: &str) -> Result<String, PersonError> {
    let code: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = code.as_bytes();
    if bytes.len() != FISCAL_CODE_LEN || !code.is_ascii() {
        return Err(PersonError::FiscalCode);
    }
    let letter = |b: u8| b.is_ascii_uppercase();
    // A digit, or the letter that replaces it in an omocodia code.
    let digit = |b: u8| b.is_ascii_digit() || b"LMNPQRSTUV".contains(&b);
    let month = |b: u8| b"ABCDEHLMPRST".contains(&b);
    let shape_ok = bytes[..6].iter().all(|&b| letter(b))
        && bytes[6..8].iter().all(|&b| digit(b))
        && month(bytes[8])
        && bytes[9..11].iter().all(|&b| digit(b))
        && letter(bytes[11])
        && bytes[12..15].iter().all(|&b| digit(b))
        && letter(bytes[15]);
    if shape_ok {
        Ok(code)
    } else {
        Err(PersonError::FiscalCode)
    }
}

fn valid_name(field: &'static str, name: &str) -> Result<String, PersonError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(PersonError::NameLength { field });
    }
    if name.chars().any(char::is_control) {
        return Err(PersonError::NameControl { field });
    }
    Ok(name.to_owned())
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Person { <redacted> }")
    }
}

impl Drop for Person {
    fn drop(&mut self) {
        self.fiscal_code.zeroize();
        self.given_name.zeroize();
        self.family_name.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(code: &str, given: &str, family: &str) -> Person {
        Person {
            fiscal_code: code.to_owned(),
            given_name: given.to_owned(),
            family_name: family.to_owned(),
            birth_date: None,
        }
    }

    #[test]
    fn fiscal_codes_are_normalised_and_shape_checked() {
        assert_eq!(
            normalise_fiscal_code(" rssmra 80a01\th501u ").unwrap(),
            "RSSMRA80A01H501U"
        );
        // Omocodia: digits replaced by letters.
        assert!(normalise_fiscal_code("RSSMRA8LA01H50MU").is_ok());
        for bad in [
            "",
            "RSSMRA80A01H501",
            "RSSMRA80A01H501UX",
            "RSSMR180A01H501U",
            "RSSMRA80Z01H501U",
            "RSSMRA80A01H5A1U",
            "RSSMRA80A0ÈH501U",
            "12345678901",
        ] {
            assert_eq!(
                normalise_fiscal_code(bad),
                Err(PersonError::FiscalCode),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let ok = person("rssmra80a01h501u", "  Maria Luisa ", "D'Angelo").validated();
        let ok = ok.unwrap();
        assert_eq!(ok.fiscal_code, "RSSMRA80A01H501U");
        assert_eq!(ok.given_name, "Maria Luisa");
        assert_eq!(
            person("RSSMRA80A01H501U", " ", "X").validated(),
            Err(PersonError::NameLength {
                field: "given_name"
            })
        );
        assert_eq!(
            person("RSSMRA80A01H501U", "A", &"é".repeat(201)).validated(),
            Err(PersonError::NameLength {
                field: "family_name"
            })
        );
        assert!(
            person("RSSMRA80A01H501U", "A", &"é".repeat(200))
                .validated()
                .is_ok()
        );
        let error = person("RSSMRA80A01H501U", "A\u{7}b", "X")
            .validated()
            .unwrap_err();
        assert_eq!(error.field(), "given_name");
    }

    #[test]
    fn debug_redacts_and_unknown_fields_are_refused() {
        let p = person("RSSMRA80A01H501U", "Maria", "Rossi");
        let debug = format!("{p:?}");
        assert!(!debug.contains("Maria") && !debug.contains("RSSMRA"));
        let json = r#"{"fiscal_code":"X","given_name":"a","family_name":"b","extra":1}"#;
        assert!(serde_json::from_str::<Person>(json).is_err());
        let json =
            r#"{"fiscal_code":"X","given_name":"a","family_name":"b","birth_date":"1980-01-01"}"#;
        let p: Person = serde_json::from_str(json).unwrap();
        assert_eq!(p.birth_date, NaiveDate::from_ymd_opt(1980, 1, 1));
    }

    /// The patterns written in the `ToSchema` derive are the ones the rest of the code names.
    #[cfg(feature = "openapi")]
    #[test]
    fn the_schema_patterns_are_the_shared_ones() {
        let schema = serde_json::to_value(<Person as utoipa::PartialSchema>::schema()).unwrap();
        let properties = &schema["properties"];
        assert_eq!(properties["fiscal_code"]["pattern"], FISCAL_CODE_PATTERN);
        for name in ["given_name", "family_name"] {
            assert_eq!(properties[name]["pattern"], filiera_domain::TEXT_PATTERN);
            assert_eq!(properties[name]["maxLength"], MAX_NAME_CHARS);
        }
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn the_schema_names_every_field() {
        let schema = <Person as utoipa::PartialSchema>::schema();
        let json = serde_json::to_string(&schema).unwrap();
        for field in ["fiscal_code", "given_name", "family_name", "birth_date"] {
            assert!(json.contains(field), "{field} in {json}");
        }
    }
}
