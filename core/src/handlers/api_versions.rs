//! ApiVersions: the API table clients negotiate against.

use super::{ApiSpec, Started};
use super::{Handler, Step};
use super::Context;
use crate::errors;
use crate::storage::StorageReply;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::ResponseKind;

pub(crate) const SPEC: ApiSpec = api_spec!(ApiVersions, 0..=3, decodable from 0, |_request, meta| Started::new(ApiVersions, true));

pub(crate) struct ApiVersions;

fn table() -> Vec<ApiVersion> {
    super::APIS
        .iter()
        .map(|api| ApiVersion::default().with_api_key(api.key as i16).with_min_version(api.min).with_max_version(api.max))
        .collect()
}

/// The answer to an ApiVersions request of a version korvet does not know: v0 format, error
/// UNSUPPORTED_VERSION, and the table so that the client retries with a version it finds there.
pub(crate) fn unsupported_version() -> ResponseKind {
    ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(errors::UNSUPPORTED_VERSION).with_api_keys(table()))
}

impl Handler for ApiVersions {
    fn resume(&mut self, _cx: &mut Context<'_>, _replies: Vec<StorageReply>) -> Step {
        Step::Respond(ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(table())))
    }
}
