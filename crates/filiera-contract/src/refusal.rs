//! What a client is told of a refused command, by the API and by the command line alike.

use filiera_domain::PathwayError;

/// What a client is told of a refused command: the domain's explanation, plus where the API
/// lists what the domain only names (the domain knows no routes). The
/// API's problem documents and the command line say the same.
pub fn refusal_detail(err: &PathwayError) -> String {
    match err {
        PathwayError::UnknownTerritory { .. } => {
            format!("{err}; list valid codes with GET /v1/territories")
        }
        PathwayError::UnknownProvider { .. } => {
            format!("{err}; list them with GET /v1/providers")
        }
        other => other.to_string(),
    }
}
