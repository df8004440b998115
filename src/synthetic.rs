//! The mark of injected requests: the traffic injector sends it and the configuration adds
//! it to an injector's request.
//!
//! A leaf: it imports nothing from the crate.

use http::{HeaderName, HeaderValue};

/// The header every injected request carries.
pub const SYNTHETIC_HEADER: &str = "x-nightjar-synthetic";

/// The header name injected requests carry, parsed.
pub fn synthetic_header() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(SYNTHETIC_HEADER),
        HeaderValue::from_static("1"),
    )
}
