//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255): the client sends a signed JWT; korvet checks
//! its signature against the configured public key (RSA or EC, PEM), its expiry and not-before
//! against the broker's clock, and the issuer and audience when configured. The principal is
//! `User:` and the subject claim (`sub`, Kafka's default `sasl.oauthbearer.sub.claim.name`).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Where tokens come from and what they must say.
#[derive(Clone)]
pub struct OAuthConfig {
    /// The issuer's public key, PEM (`-----BEGIN PUBLIC KEY-----`, RSA or EC).
    pub public_key_pem: Vec<u8>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub subject_claim: String,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OAuthConfig(issuer {:?}, audience {:?}, subject claim {:?})", self.issuer, self.audience, self.subject_claim)
    }
}

impl OAuthConfig {
    /// The key and the algorithms it verifies; an error for a key that is neither RSA nor EC.
    pub fn key(&self) -> Result<(DecodingKey, &'static [Algorithm]), String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(&self.public_key_pem) {
            return Ok((key, &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512]));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&self.public_key_pem) {
            return Ok((key, &[Algorithm::ES256, Algorithm::ES384]));
        }
        Err("the OAUTHBEARER public key is neither an RSA nor an EC public key in PEM".into())
    }
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub user: String,
    /// When the token expires, in ms since the epoch.
    pub expires_at_ms: i64,
}

/// The bearer token of the client's message: `n,[a=authzid],\x01auth=Bearer <token>\x01...\x01`.
pub fn bearer_token(message: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(message).map_err(|_| "the OAUTHBEARER message is not UTF-8".to_string())?;
    let (gs2, rest) = text.split_once('\u{1}').ok_or("malformed OAUTHBEARER message")?;
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return Err("OAUTHBEARER channel binding is not supported".into());
    }
    rest.split('\u{1}')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")))
        .map(|token| token.trim().to_string())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| "the OAUTHBEARER message has no bearer token".into())
}

/// Checks a token at `now_ms` (wall clock, ms since the epoch).
pub fn verify(config: &OAuthConfig, token: &str, now_ms: i64) -> Result<Verified, String> {
    let (key, algorithms) = config.key()?;
    let header = jsonwebtoken::decode_header(token).map_err(|err| format!("malformed token: {err}"))?;
    if !algorithms.contains(&header.alg) {
        return Err(format!("token signed with {:?}, which the configured key does not verify", header.alg));
    }
    let mut validation = Validation::new(header.alg);
    // Times are checked below against the broker's clock, which the core is given.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    match &config.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
    }
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|err| format!("token refused: {err}"))?.claims;
    let seconds = |name: &str| claims.get(name).and_then(serde_json::Value::as_f64).map(|s| (s * 1000.0) as i64);
    let expires_at_ms = seconds("exp").ok_or("the token has no exp claim")?;
    if expires_at_ms <= now_ms {
        return Err("the token has expired".into());
    }
    if seconds("nbf").is_some_and(|nbf| nbf > now_ms) {
        return Err("the token is not valid yet".into());
    }
    let user = claims.get(&config.subject_claim).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
    let user = user.ok_or_else(|| format!("the token has no {} claim", config.subject_claim))?;
    Ok(Verified { user: user.to_string(), expires_at_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_found_in_the_client_message() {
        assert_eq!(bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(), "abc.def.ghi");
        assert_eq!(bearer_token(b"n,a=alice,\x01host=x\x01auth=Bearer t\x01\x01").unwrap(), "t");
        assert!(bearer_token(b"n,,\x01\x01").is_err());
        assert!(bearer_token(b"p=x,,\x01auth=Bearer t\x01\x01").is_err());
    }
}
