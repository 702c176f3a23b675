//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: the credentials a
//! broker keeps (salt, iteration count, stored key, server key, never the password), and the
//! server side of the two-message exchange.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on the iteration count of a SCRAM credential.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The number DescribeUserScramCredentials and AlterUserScramCredentials use.
    pub fn kafka_code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_code() == code)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, iterations) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            ScramMechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

/// What a broker keeps of one user's password for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    // The keys are as good as the password against this broker: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramCredential({} {} i={})", self.user, self.mechanism.name(), self.iterations)
    }
}

impl ScramCredential {
    /// The credential from a salted password, as AlterUserScramCredentials sends it.
    pub fn from_salted_password(user: &str, mechanism: ScramMechanism, salt: &[u8], iterations: i32, salted: &[u8]) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        ScramCredential {
            user: user.to_string(),
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
        }
    }

    pub fn from_password(user: &str, mechanism: ScramMechanism, password: &str, salt: &[u8], iterations: i32) -> Self {
        let salted = mechanism.salted_password(password.as_bytes(), salt, iterations.max(1) as u32);
        Self::from_salted_password(user, mechanism, salt, iterations, &salted)
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN checks passwords
    /// against the SCRAM credentials, so that one set of users serves every mechanism).
    pub fn verifies_password(&self, password: &str) -> bool {
        let again = Self::from_password(&self.user, self.mechanism, password, &self.salt, self.iterations);
        constant_time_eq(&again.stored_key, &self.stored_key)
    }

    /// The stored form, Kafka's own: `salt=..,stored_key=..,server_key=..,iterations=..`.
    pub fn encode(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key),
            self.iterations
        )
    }

    pub fn decode(user: &str, mechanism: ScramMechanism, stored: &str) -> Option<Self> {
        let mut credential = ScramCredential {
            user: user.to_string(),
            mechanism,
            salt: Vec::new(),
            iterations: 0,
            stored_key: Vec::new(),
            server_key: Vec::new(),
        };
        for field in stored.split(',') {
            let (key, value) = field.split_once('=')?;
            match key {
                "salt" => credential.salt = BASE64.decode(value).ok()?,
                "stored_key" => credential.stored_key = BASE64.decode(value).ok()?,
                "server_key" => credential.server_key = BASE64.decode(value).ok()?,
                "iterations" => credential.iterations = value.parse().ok()?,
                _ => {}
            }
        }
        let complete = !credential.salt.is_empty() && !credential.stored_key.is_empty() && credential.iterations > 0;
        complete.then_some(credential)
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client's first message, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// `n,,` or `n,a=authzid,` (channel binding is not offered, so `p=` is refused).
    pub gs2_header: String,
    pub user: String,
    pub nonce: String,
    /// The message without its GS2 header, part of what both proofs sign.
    pub bare: String,
}

pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, String> {
    let message = std::str::from_utf8(message).map_err(|_| "the SCRAM client-first message is not UTF-8".to_string())?;
    let mut parts = message.splitn(3, ',');
    let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("malformed SCRAM client-first message".into());
    };
    if binding != "n" && binding != "y" {
        return Err("SCRAM channel binding is not supported".into());
    }
    let mut user = None;
    let mut nonce = None;
    for attribute in bare.split(',') {
        match attribute.split_once('=') {
            Some(("n", value)) => user = Some(unescape_name(value)?),
            Some(("r", value)) => nonce = Some(value.to_string()),
            Some(("m", _)) => return Err("SCRAM mandatory extensions are not supported".into()),
            // Kafka's extensions (tokenauth=...) are optional; korvet has no delegation tokens.
            _ => {}
        }
    }
    let (Some(user), Some(nonce)) = (user, nonce) else {
        return Err("the SCRAM client-first message lacks a user name or nonce".into());
    };
    if let Some(id) = authzid.strip_prefix("a=") {
        if unescape_name(id)? != user {
            return Err("the SCRAM authorization id differs from the user name".into());
        }
    }
    Ok(ClientFirst { gs2_header: format!("{binding},{authzid},"), user, nonce, bare: bare.to_string() })
}

/// A SCRAM user name with `=2C` and `=3D` decoded (RFC 5802 section 5.1).
fn unescape_name(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("malformed SCRAM user name".into()),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A SCRAM exchange after the server's first message: what the client's final message must
/// prove.
#[derive(Clone, Debug)]
pub struct ScramExchange {
    credential: ScramCredential,
    client: ClientFirst,
    /// Client nonce followed by the server's.
    nonce: String,
    server_first: String,
}

impl ScramExchange {
    /// Answers the client's first message: the combined nonce, the salt and the iterations.
    pub fn start(client: ClientFirst, credential: ScramCredential, server_nonce: &str) -> (Self, Vec<u8>) {
        let nonce = format!("{}{}", client.nonce, server_nonce);
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let reply = server_first.clone().into_bytes();
        (ScramExchange { credential, client, nonce, server_first }, reply)
    }

    pub fn user(&self) -> &str {
        &self.credential.user
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.credential.mechanism
    }

    /// Checks the client's proof; the server's final message (its own signature) if it holds.
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, String> {
        let message = std::str::from_utf8(client_final).map_err(|_| "the SCRAM client-final message is not UTF-8".to_string())?;
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or("the SCRAM client-final message has no proof")?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", value)) => binding = Some(value),
                Some(("r", value)) => nonce = Some(value),
                _ => {}
            }
        }
        if binding != Some(BASE64.encode(&self.client.gs2_header).as_str()) {
            return Err("the SCRAM channel binding does not match the client-first message".into());
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err("the SCRAM nonce does not match".into());
        }
        let proof = BASE64.decode(proof).map_err(|_| "the SCRAM proof is not base64".to_string())?;
        let auth_message = format!("{},{},{}", self.client.bare, self.server_first, without_proof);
        let mechanism = self.credential.mechanism;
        let client_signature = mechanism.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err("invalid credentials".into());
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&mechanism.hash(&client_key), &self.credential.stored_key) {
            return Err("invalid credentials".into());
        }
        let server_signature = mechanism.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example exchange of RFC 7677 section 3.
    #[test]
    fn rfc7677_example_exchange() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramCredential::from_password("user", ScramMechanism::Sha256, "pencil", &salt, 4096);
        let client = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let (exchange, server_first) = ScramExchange::start(client, credential.clone(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(server_first, b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(exchange.finish(client_final).unwrap(), b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let wrong = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=";
        assert!(exchange.finish(wrong).is_err());
        assert!(credential.verifies_password("pencil"));
        assert!(!credential.verifies_password("pencil "));
    }

    #[test]
    fn credentials_survive_their_stored_form_and_names_unescape() {
        let credential = ScramCredential::from_password("a,b=c", ScramMechanism::Sha512, "pw", b"salt", 4096);
        let back = ScramCredential::decode("a,b=c", ScramMechanism::Sha512, &credential.encode()).unwrap();
        assert_eq!(back, credential);
        assert_eq!(parse_client_first(b"n,,n=a=2Cb=3Dc,r=x").unwrap().user, "a,b=c");
        assert!(parse_client_first(b"p=tls-unique,,n=u,r=x").is_err());
        assert!(parse_client_first(b"n,a=other,n=u,r=x").is_err());
        assert!(parse_client_first(b"n,,n=u=2").is_err());
        assert!(!format!("{credential:?}").contains(&BASE64.encode(&credential.stored_key)));
    }
}
