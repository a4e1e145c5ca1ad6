//! The one written form of a date the service reads: `YYYY-MM-DD` (RFC 3339's `full-date`),
//! with errors that say so, for body members (`on`, `birth_date`) and query parameters
//! (`from`, `to`) alike.

use chrono::NaiveDate;
use serde::Deserializer;
use serde::de::Visitor;

/// The expected form, as errors name it.
pub const DATE_FORMAT: &str = "YYYY-MM-DD";

/// Why a text is not a date.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not of the form `YYYY-MM-DD` (`10/01/2024`, `2024-1-10`, `yesterday`).
    #[error("expected a date {DATE_FORMAT}, got `{0}`")]
    Format(String),
    /// Of the form, but no day of the calendar (`2024-02-30`, `2023-13-01`).
    #[error("`{0}` is not a calendar date (expected {DATE_FORMAT})")]
    NotInCalendar(String),
}

/// Parses `YYYY-MM-DD`: four digits, two, two, separated by `-`, naming a day of the
/// proleptic Gregorian calendar. Nothing else is accepted (no sign, no time, no spaces).
pub fn parse_date(text: &str) -> Result<NaiveDate, DateError> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    // What is echoed is bounded: a long text is cut, so that an error stays readable.
    let shown = || text.chars().take(40).collect::<String>();
    if !shaped {
        return Err(DateError::Format(shown()));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| DateError::NotInCalendar(shown()))
}

/// `#[serde(deserialize_with = "filiera_domain::date::deserialize")]` for a `NaiveDate` member:
/// [`parse_date`] with its errors.
pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<NaiveDate, D::Error> {
    de.deserialize_str(DateVisitor)
}

/// The same for an `Option<NaiveDate>` member (with `#[serde(default)]`): `null` is `None`.
pub fn deserialize_option<'de, D: Deserializer<'de>>(de: D) -> Result<Option<NaiveDate>, D::Error> {
    de.deserialize_option(OptionVisitor)
}

struct DateVisitor;

impl Visitor<'_> for DateVisitor {
    type Value = NaiveDate;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a date {DATE_FORMAT}")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NaiveDate, E> {
        parse_date(v).map_err(E::custom)
    }
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<NaiveDate>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a date {DATE_FORMAT} or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        deserialize(de).map(Some)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_date(v).map(Some).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yyyy_mm_dd_days_of_the_calendar_are_dates() {
        assert_eq!(
            parse_date("2024-02-29"),
            Ok(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
        );
        for text in [
            "10/01/2024",
            "2024-1-10",
            "+2024-01-10",
            " 2024-01-10",
            "2024-01-10T00:00:00Z",
            "",
        ] {
            assert_eq!(
                parse_date(text),
                Err(DateError::Format(text.into())),
                "{text}"
            );
            assert!(
                parse_date(text)
                    .unwrap_err()
                    .to_string()
                    .contains("YYYY-MM-DD")
            );
        }
        for text in ["2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10"] {
            let err = parse_date(text).unwrap_err();
            assert_eq!(err, DateError::NotInCalendar(text.into()), "{text}");
            assert_eq!(
                err.to_string(),
                format!("`{text}` is not a calendar date (expected YYYY-MM-DD)")
            );
        }
    }

    #[test]
    fn members_read_through_serde_name_the_format() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            #[serde(deserialize_with = "deserialize")]
            on: NaiveDate,
            #[serde(default, deserialize_with = "deserialize_option")]
            birth: Option<NaiveDate>,
        }
        let err = serde_json::from_str::<Body>(r#"{"on": "10/01/2024"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("expected a date YYYY-MM-DD, got `10/01/2024`"),
            "{err}"
        );
        let err = serde_json::from_str::<Body>(r#"{"on": 20240110}"#).unwrap_err();
        assert!(
            err.to_string().contains("expected a date YYYY-MM-DD"),
            "{err}"
        );
        let err = serde_json::from_str::<Body>(r#"{"on": "2024-01-10", "birth": "2024-02-30"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("not a calendar date"), "{err}");
        let body: Body = serde_json::from_str(r#"{"on": "2024-01-10", "birth": null}"#).unwrap();
        assert_eq!(body.birth, None);
        let body: Body =
            serde_json::from_str(r#"{"on": "2024-01-10", "birth": "1980-05-01"}"#).unwrap();
        assert_eq!(body.birth, NaiveDate::from_ymd_opt(1980, 5, 1));
    }
}
