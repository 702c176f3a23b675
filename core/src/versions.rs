//! Which APIs korvet serves and at which versions: derived from the handlers' specs (see
//! `handlers`, where each API declares its own).

pub use crate::handlers::{api_name, spec as lookup, ApiSpec, APIS as SUPPORTED_APIS};
